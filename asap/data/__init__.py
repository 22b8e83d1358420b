"""Lightning DataModules for the benchmark tasks, created by name (offline unless the task lives on the hub).

Every DataModule has ``task``, ``modality`` ("vision" or "text") and ``num_classes``; vision ones add ``image_size``
and ``in_chans`` and yield ``(images float (B, C, H, W), labels long (B,))``; text ones add ``vocab_size`` and
``max_len`` and yield ``(tokens long (B, L), labels long (B,))`` padded with id 0, so the mask is ``tokens != 0``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asap.data.base import ClassificationDataModule, TextDataModule, VisionDataModule, WheelTextDataModule
from asap.data.hub import CIFAR10, CIFAR100, IMDB, AGNews, CatsDogs, DBpedia14, FashionMNIST, YelpFull
from asap.data.listops import ListOps
from asap.data.mnist import MNIST
from asap.data.orange_text import Newsgroups, ReutersR8, ReutersR52
from asap.data.recall import AssociativeRecall
from asap.data.rotten_tomatoes import RottenTomatoes
from asap.data.tokenize import PAD, ByteTokenizer, SubwordTokenizer
from asap.data.tweets import Tweets
from asap.data.wheels import wheel_member, wheel_members

TASKS: dict[str, type[ClassificationDataModule]] = {
    cls.task: cls
    for cls in (
        MNIST,
        RottenTomatoes,
        Tweets,
        Newsgroups,
        ReutersR8,
        ReutersR52,
        ListOps,
        AssociativeRecall,
        CIFAR10,
        CIFAR100,
        FashionMNIST,
        CatsDogs,
        IMDB,
        AGNews,
        DBpedia14,
        YelpFull,
    )
}


def create_datamodule(
    task: str, data_dir: str | Path = "data", batch_size: int = 64, seed: int = 0, **options: Any
) -> ClassificationDataModule:
    """The DataModule of ``task``; ``options`` go to its constructor (e.g. ``train_size``, ``max_len``)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    return TASKS[task](data_dir=data_dir, batch_size=batch_size, seed=seed, **options)


__all__ = [
    "PAD",
    "TASKS",
    "ByteTokenizer",
    "ClassificationDataModule",
    "SubwordTokenizer",
    "TextDataModule",
    "VisionDataModule",
    "WheelTextDataModule",
    "create_datamodule",
    "wheel_member",
    "wheel_members",
]
