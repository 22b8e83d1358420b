"""Tokenisers that need no download: UTF-8 bytes by default, a BPE trained on the training split, or a fixed vocabulary.

Id ``PAD = 0`` is padding in every vocabulary, so models derive the padding mask as ``tokens != 0``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tokenizers
import torch
from tokenizers import decoders, models, pre_tokenizers, trainers
from torch import Tensor

PAD = 0


class ByteTokenizer:
    """UTF-8 bytes as ids: byte ``b`` is id ``b + 1``. No training, no unknown tokens, any language."""

    vocab_size = 257

    def encode(self, texts: Sequence[str], max_len: int) -> list[Tensor]:
        """One int16 id tensor per text, truncated to the first ``max_len`` bytes."""
        return [torch.from_numpy(np.frombuffer(t.encode()[:max_len], np.uint8).astype(np.int16) + 1) for t in texts]

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """Text of ``ids``, skipping padding; a multi-byte character cut by truncation decodes as U+FFFD."""
        return bytes(int(i) - 1 for i in ids if int(i) != PAD).decode("utf-8", errors="replace")


class SubwordTokenizer:
    """A Hugging Face ``tokenizers.Tokenizer`` whose id 0 is padding, built locally (no hub download)."""

    def __init__(self, tokenizer: tokenizers.Tokenizer):
        self.tokenizer = tokenizer

    @classmethod
    def bpe(cls, texts: Sequence[str], vocab_size: int) -> SubwordTokenizer:
        """Byte-level BPE learned from ``texts`` (pass the training split only): exact round trip, no unknowns."""
        tokenizer = tokenizers.Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=["<pad>"], initial_alphabet=alphabet, show_progress=False
        )
        tokenizer.train_from_iterator(texts, trainer)
        if tokenizer.get_vocab_size() > vocab_size:
            raise ValueError(f"vocab_size={vocab_size} is below the {len(alphabet) + 1} byte-level BPE base tokens")
        return cls(tokenizer)

    @classmethod
    def words(cls, vocab: Sequence[str]) -> SubwordTokenizer:
        """Whitespace-separated words of a fixed vocabulary whose first entry is padding; unknown words raise."""
        tokenizer = tokenizers.Tokenizer(models.WordLevel({word: i for i, word in enumerate(vocab)}, unk_token=None))
        tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        tokenizer.add_special_tokens([vocab[PAD]])
        return cls(tokenizer)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, texts: Sequence[str], max_len: int) -> list[Tensor]:
        """One int32 id tensor per text, truncated to ``max_len`` tokens."""
        encodings = self.tokenizer.encode_batch(list(texts))
        return [torch.from_numpy(np.asarray(e.ids[:max_len], dtype=np.int32)) for e in encodings]

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """Text of ``ids``, skipping padding."""
        return self.tokenizer.decode([int(i) for i in ids])


def pad(sequences: Sequence[Tensor]) -> Tensor:
    """``(B, L)`` long ids, right-padded with ``PAD`` to the longest sequence."""
    return torch.nn.utils.rnn.pad_sequence([s.long() for s in sequences], batch_first=True, padding_value=PAD)
