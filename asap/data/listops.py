"""ListOps (Long Range Arena rules): nested MIN/MAX/MED/SM expressions over digits, labelled by their value.

Generated locally with a fixed seed and cached under ``data_dir/listops/``. Each split has its own random stream,
so changing one split's size leaves the others unchanged.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from asap.data.base import GeneratedDataModule, TokenDataset, collate_tokens
from asap.data.tokenize import SubwordTokenizer

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
VOCAB = ("<pad>", *"0123456789", *OPERATORS, "]")  # digit d has id d + 1
MAX_DEPTH, MAX_ARGS, OPERATOR_PROB = 10, 10, 0.25


class _TooLong(Exception):
    pass


def apply(operator: str, args: Sequence[int]) -> int:
    """Value of ``[OP args ]``: MED of an even count is the floored mean of the middle pair, as LRA's int(median)."""
    if operator == "[MIN":
        return min(args)
    if operator == "[MAX":
        return max(args)
    if operator == "[SM":
        return sum(args) % 10
    ordered, middle = sorted(args), len(args) // 2
    return ordered[middle] if len(args) % 2 else (ordered[middle - 1] + ordered[middle]) // 2


def generate_expression(rng: random.Random, max_len: int) -> tuple[list[str], int] | None:
    """A random expression's tokens and value, or None once it grows past ``max_len`` tokens.

    LRA's tree: below the root (always an operator) a node is an operator with probability 0.25, else a digit;
    operators take 2-10 arguments; nodes at depth 10 are digits.
    """
    tokens: list[str] = []

    def node(depth: int) -> int:
        if depth > 1 and (depth >= MAX_DEPTH or rng.random() >= OPERATOR_PROB):
            digit = rng.randrange(10)
            tokens.append(str(digit))
            return digit
        operator = rng.choice(OPERATORS)
        tokens.append(operator)
        args = []
        for _ in range(rng.randint(2, MAX_ARGS)):
            args.append(node(depth + 1))
            if len(tokens) >= max_len:  # the closing bracket would exceed max_len: stop early, it is rejected
                raise _TooLong
        tokens.append("]")
        return apply(operator, args)

    try:
        value = node(1)
    except _TooLong:
        return None
    return tokens, value


def generate_listops(
    n: int, seed: int | str, min_len: int = 128, max_len: int = 512, max_label_share: float = 0.15
) -> tuple[list[str], list[int]]:
    """``n`` space-separated expressions with ``min_len <= tokens <= max_len``, and their values.

    Values are skewed towards 0 and 9 (MIN/MAX of many digits), so no value may exceed ``max_label_share`` of
    the samples: a constant predictor then scores at most that.
    """
    if max_label_share < 0.1:
        raise ValueError(f"max_label_share={max_label_share} < 0.1 cannot fill 10 classes")
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    rng, cap, counts = random.Random(seed), math.ceil(max_label_share * n), [0] * 10
    texts, labels = [], []
    while len(texts) < n:
        sample = generate_expression(rng, max_len)
        if sample is None or len(sample[0]) < min_len or counts[sample[1]] >= cap:
            continue
        counts[sample[1]] += 1
        texts.append(" ".join(sample[0]))
        labels.append(sample[1])
    return texts, labels


class ListOps(GeneratedDataModule):
    """Batches ``(tokens long (B, L) padded with 0, labels long (B,))``; ``vocab_size`` 16, 10 classes.

    Args:
        train_size, val_size, test_size: number of expressions generated per split.
        min_len, max_len: token length range of the expressions (LRA kept 500-2000).
        max_label_share: the most any value may take of a split.
    """

    task, modality, num_classes, vocab_size = "listops", "text", 10, len(VOCAB)
    collate_fn = staticmethod(collate_tokens)
    bucket_by_length = True

    def __init__(
        self,
        data_dir: str | Path = "data",
        train_size: int = 5000,
        val_size: int = 500,
        test_size: int = 1000,
        min_len: int = 128,
        max_len: int = 512,
        max_label_share: float = 0.15,
        **kwargs: Any,
    ):
        super().__init__(data_dir, train_size=train_size, val_size=val_size, test_size=test_size, **kwargs)
        self.min_len, self.max_len, self.max_label_share = min_len, max_len, max_label_share
        self.tokenizer = SubwordTokenizer.words(VOCAB)

    def cache_key(self) -> str:
        return f"len{self.min_len}-{self.max_len}_share{self.max_label_share}"

    def generate(self, size: int, seed: str) -> tuple[list[str], list[int]]:
        return generate_listops(size, seed, self.min_len, self.max_len, self.max_label_share)

    def dataset(self, samples: tuple[list[str], list[int]]) -> Dataset:
        texts, labels = samples
        return TokenDataset(self.tokenizer.encode(texts, self.max_len), labels)
