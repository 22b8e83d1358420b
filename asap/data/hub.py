"""Paper-scale data sets from the Hugging Face hub (needs internet, unlike the rest of ``asap.data``).

Each class names its hub id and columns in one place; ``source=`` points a class at any other path that
``datasets.load_dataset`` accepts with the same schema, such as a local folder of parquet files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from torch import Tensor

from asap.data.base import TextDataModule, VisionDataModule


def load_hub_splits(source: str, cache_dir: Path, val_fraction: float, seed: int) -> dict[str, datasets.Dataset]:
    """train/val/test of a hub data set, carving a seeded ``val_fraction`` of train when it has no validation."""
    hub = datasets.load_dataset(source, cache_dir=str(cache_dir))
    if "validation" in hub:
        return {"train": hub["train"], "val": hub["validation"], "test": hub["test"]}
    order = np.random.default_rng(seed).permutation(len(hub["train"]))
    n_val = round(val_fraction * len(order))
    train, val = np.sort(order[n_val:]), np.sort(order[:n_val])
    return {"train": hub["train"].select(train), "val": hub["train"].select(val), "test": hub["test"]}


class HubSource:
    """Mixin of the hub DataModules: where the data set lives (``source``) and how validation is carved from train.

    Args:
        source: hub id or local path for ``datasets.load_dataset`` (default: the class's hub id).
        val_fraction: share of train held out for validation when the data set has no validation split.
    """

    source: str

    def __init__(
        self, data_dir: str | Path = "data", source: str | None = None, val_fraction: float = 0.1, **kwargs: Any
    ):
        super().__init__(data_dir, **kwargs)
        self.source, self.val_fraction = source or self.source, val_fraction

    def prepare_data(self) -> None:
        datasets.load_dataset(self.source, cache_dir=str(self.data_dir / "hub"))

    def hub_splits(self) -> dict[str, datasets.Dataset]:
        return load_hub_splits(self.source, self.data_dir / "hub", self.val_fraction, self.split_seed)


class HubVisionDataModule(HubSource, VisionDataModule):
    """Images and labels from the columns ``image_column`` and ``label_column`` of the hub data set."""

    image_column: str
    label_column = "label"

    def load_images(self) -> dict[str, tuple[Tensor, Tensor]]:
        mode, shape = "L" if self.in_chans == 1 else "RGB", (self.image_size, self.image_size, self.in_chans)
        out = {}
        for split, data in self.hub_splits().items():
            images = np.stack([np.asarray(image.convert(mode)).reshape(shape) for image in data[self.image_column]])
            labels = torch.tensor(list(data[self.label_column]))
            out[split] = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels
        return out


class HubTextDataModule(HubSource, TextDataModule):
    """Texts and labels from the columns ``text_column`` and ``label_column`` of the hub data set."""

    text_column = "text"
    label_column = "label"

    def load_texts(self) -> dict[str, tuple[list[str], list[int]]]:
        return {
            split: (list(data[self.text_column]), list(data[self.label_column]))
            for split, data in self.hub_splits().items()
        }


class CIFAR10(HubVisionDataModule):
    task, source, image_column, num_classes, image_size, in_chans = "cifar10", "uoft-cs/cifar10", "img", 10, 32, 3
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class CIFAR100(HubVisionDataModule):
    task, source, image_column, num_classes, image_size, in_chans = "cifar100", "uoft-cs/cifar100", "img", 100, 32, 3
    label_column = "fine_label"
    mean, std = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


class FashionMNIST(HubVisionDataModule):
    task, source, image_column = "fashion_mnist", "zalando-datasets/fashion_mnist", "image"
    num_classes, image_size, in_chans = 10, 28, 1
    mean, std = (0.2860,), (0.3530,)


class IMDB(HubTextDataModule):
    task, source, num_classes = "imdb", "stanfordnlp/imdb", 2


class AGNews(HubTextDataModule):
    task, source, num_classes = "ag_news", "fancyzhx/ag_news", 4


class DBpedia14(HubTextDataModule):
    task, source, num_classes, text_column = "dbpedia14", "fancyzhx/dbpedia_14", 14, "content"


class YelpFull(HubTextDataModule):
    task, source, num_classes = "yelp_full", "Yelp/yelp_review_full", 5
