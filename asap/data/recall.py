"""Associative recall at long n: read the value bound to a queried key out of a long sequence of key-value pairs.

Each example draws its own random binding ``value[k]`` of every key ``k < num_keys`` to a value
``< num_classes``, then ``length - 1`` pair tokens ``(k, value[k])`` with keys drawn uniformly, and puts first a
query token naming one key that occurs in the sequence. Its label is the value bound to the queried key::

    [query k=3] (5, 7) (3, 2) (0, 9) (3, 2) (5, 7) ...   ->  label 2

A pair token's id encodes its key and value together (``1 + num_keys + key * num_classes + value``; query ids
``1 + key``; 0 is padding), so no step needs a previous-token head: one layer can carry the query to a read-out
token and the next can attend from it to the pairs with the queried key. Bindings differ per example, so the
label is not a function of the bag of tokens without the query: a model averaging its tokens sees every value
about equally often (the constant predictor scores about ``1 / num_classes``), and the task is solved only
through attention, with about ``(length - 1) / num_keys`` pairs carrying the answer.

The task follows the multi-query associative recall of Arora et al. (2023), "Zoology: measuring and improving
recall in efficient language models" (arXiv:2312.04927), reduced to one query read out by a classifier.
Generated with a fixed seed per split and cached under ``data_dir/recall/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from asap.data.base import GeneratedDataModule, TokenDataset, collate_tokens


def recall_vocab_size(num_keys: int, num_classes: int) -> int:
    """Ids: padding 0, the queries ``1 .. num_keys``, then one id per (key, value) pair."""
    return 1 + num_keys + num_keys * num_classes


def generate_recall(
    n: int, seed: int | str, length: int = 512, num_keys: int = 32, num_classes: int = 10
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` sequences of ``length`` token ids ``(n, length)`` (query first) and their labels ``(n,)``.

    >>> tokens, labels = generate_recall(4, seed=0, length=9, num_keys=2, num_classes=3)
    >>> tokens.shape, labels.shape
    (torch.Size([4, 9]), torch.Size([4]))
    >>> bool(((tokens[:, 0] >= 1) & (tokens[:, 0] <= 2)).all())  # the queries come first
    True
    """
    if length < 2 or num_keys < 1 or num_classes < 2 or n < 0:
        raise ValueError(
            f"need length >= 2, num_keys >= 1, num_classes >= 2, n >= 0; got length={length}, "
            f"num_keys={num_keys}, num_classes={num_classes}, n={n}"
        )
    seed_words = [ord(c) for c in seed] if isinstance(seed, str) else [seed]
    rng = np.random.default_rng(seed_words)
    binding = rng.integers(num_classes, size=(n, num_keys))  # value of each key, per example
    keys = rng.integers(num_keys, size=(n, length - 1))  # the keys of the pair tokens
    query = keys[np.arange(n), rng.integers(length - 1, size=n)]  # a key that occurs
    values = np.take_along_axis(binding, keys, axis=1)
    pairs = 1 + num_keys + keys * num_classes + values
    tokens = np.concatenate([1 + query[:, None], pairs], axis=1)
    labels = binding[np.arange(n), query]
    return torch.from_numpy(tokens).long(), torch.from_numpy(labels).long()


class AssociativeRecall(GeneratedDataModule):
    """Batches ``(tokens long (B, length), labels long (B,))``; see the module docstring.

    Args:
        train_size, val_size, test_size: number of sequences generated per split (each split its own stream).
        length: tokens per sequence (the query and ``length - 1`` pairs); no padding.
        num_keys: keys per example's binding; each occurs about ``(length - 1) / num_keys`` times.
        num_classes: values a key can be bound to (the classes).
    """

    task, modality = "recall", "text"
    collate_fn = staticmethod(collate_tokens)

    def __init__(
        self,
        data_dir: str | Path = "data",
        train_size: int = 20_000,
        val_size: int = 2_000,
        test_size: int = 10_000,
        length: int = 512,
        num_keys: int = 32,
        num_classes: int = 10,
        **kwargs: Any,
    ):
        super().__init__(data_dir, train_size=train_size, val_size=val_size, test_size=test_size, **kwargs)
        self.length, self.num_keys, self.num_classes = length, num_keys, num_classes
        self.max_len = length
        self.vocab_size = recall_vocab_size(num_keys, num_classes)

    def cache_key(self) -> str:
        return f"len{self.length}_k{self.num_keys}_v{self.num_classes}"

    def generate(self, size: int, seed: str) -> tuple[torch.Tensor, torch.Tensor]:
        return generate_recall(size, seed, self.length, self.num_keys, self.num_classes)

    def dataset(self, samples: tuple[torch.Tensor, torch.Tensor]) -> Dataset:
        tokens, labels = samples
        return TokenDataset(list(tokens), labels)
