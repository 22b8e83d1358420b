"""Paper-scale data sets from the Hugging Face hub (needs internet, unlike the rest of ``asap.data``).

Each class names its hub id and columns in one place; ``source=`` points a class at any other path that
``datasets.load_dataset`` accepts with the same schema, such as a local folder of parquet files.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import PIL.Image
import torch
from torch import Tensor

from asap.data.base import TextDataModule, VisionDataModule, cached, split_by_group

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)


def _datasets():
    """The ``datasets`` library, imported on first use: the offline tasks (and a GPU machine without it) never
    need it."""
    try:
        return importlib.import_module("datasets")
    except ImportError:
        raise ImportError("hub data sets need the 'datasets' package (pip install datasets)") from None


def load_hub_splits(source: str, cache_dir: Path, val_fraction: float, seed: int) -> dict[str, datasets.Dataset]:
    """train/val/test of a hub data set, carving a seeded ``val_fraction`` of train when it has no validation."""
    hub = _datasets().load_dataset(source, cache_dir=str(cache_dir))
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
        _datasets().load_dataset(self.source, cache_dir=str(self.data_dir / "hub"))

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


class CatsDogs(HubVisionDataModule):
    """Microsoft's Cats vs Dogs photos (cat 0, dog 1), the image task of Sinkformer and ESPFormer.

    The hub has one split of ~23.4k JPEGs of varying sizes and modes. Each is converted to RGB and resized to
    ``image_size`` x ``image_size`` (bicubic, aspect ratio not kept, like the papers' ``Resize((224, 224))``);
    undecodable ones are skipped and counted in a warning. The uint8 result is decoded once per image size and
    source, then cached as ``data_dir/cats_dogs/<image_size>px_<source hash>.pt``.

    Train/val/test are a seeded random split of the hub rows (``split_by_group`` with ``split_seed``), taking
    ``1 - val_fraction - test_fraction`` / ``val_fraction`` / ``test_fraction`` (80/10/10 by default); a row
    whose image is undecodable is left out of its split, so the other rows keep their split whatever is skipped.
    ``mean``/``std`` are ImageNet's (photos of the same kind, cats and dogs included), not measured on this set.

    Args:
        image_size: side of the square images. 128 by default: with 8x8 patches that is 256 tokens, close to the
            196 of the papers' 224 px images with 16x16 patches, while the decoded data take 1.2 GB of memory
            rather than 3.5 GB; pass 224 to match the papers' resolution.
        test_fraction: share of the hub rows held out for test.
    """

    task, source, image_column, label_column = "cats_dogs", "microsoft/cats_vs_dogs", "image", "labels"
    num_classes, image_size, in_chans = 2, 128, 3
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    def __init__(
        self,
        data_dir: str | Path = "data",
        image_size: int | None = None,
        test_fraction: float = 0.1,
        **kwargs: Any,
    ):
        super().__init__(data_dir, **kwargs)
        self.image_size, self.test_fraction = image_size or self.image_size, test_fraction
        if not (self.val_fraction >= 0 and self.test_fraction >= 0 and self.val_fraction + self.test_fraction < 1):
            raise ValueError(f"need val_fraction + test_fraction < 1, got {self.val_fraction} + {test_fraction}")

    @property
    def cache_path(self) -> Path:
        digest = hashlib.sha256(self.source.encode()).hexdigest()[:8]
        return self.data_dir / self.task / f"{self.image_size}px_{digest}.pt"

    def prepare_data(self) -> None:
        if not self.cache_path.exists():
            self.decoded()

    def decoded(self) -> dict[str, Any]:
        """``images`` uint8 ``(N, 3, S, S)``, ``labels`` ``(N,)`` and hub ``rows`` ``(N,)`` of the decodable
        images, with ``n_rows`` (all hub rows) and the ``skipped`` rows; built once, then read from the cache."""
        return cached(self.cache_path, self._decode)

    def _decode(self) -> dict[str, Any]:
        hub = _datasets().load_dataset(self.source, split="train", cache_dir=str(self.data_dir / "hub"))
        hub = hub.cast_column(self.image_column, _datasets().Image(decode=False))  # decode here, to skip bad files
        size, n_rows = self.image_size, len(hub)
        images, kept, skipped = np.empty((n_rows, size, size, 3), np.uint8), [], []
        for row, item in enumerate(hub[self.image_column]):
            try:
                with PIL.Image.open(io.BytesIO(item["bytes"]) if item["bytes"] else item["path"]) as image:
                    image = image.convert("RGB").resize((size, size), PIL.Image.Resampling.BICUBIC)
                    images[len(kept)] = np.asarray(image)
            except (OSError, ValueError, SyntaxError, PIL.Image.DecompressionBombError) as error:
                skipped.append(row)
                log.debug("%s: row %d is undecodable: %s", self.task, row, error)
                continue
            kept.append(row)
        if skipped:
            log.warning("%s: skipped %d undecodable images of %d in %s", self.task, len(skipped), n_rows, self.source)
        labels = torch.tensor(list(hub[self.label_column]), dtype=torch.long)
        rows = torch.tensor(kept, dtype=torch.long)
        return {
            "images": torch.from_numpy(images[: len(kept)]).permute(0, 3, 1, 2).contiguous(),
            "labels": labels[rows],
            "rows": rows,
            "n_rows": n_rows,
            "skipped": skipped,
        }

    def load_images(self) -> dict[str, tuple[Tensor, Tensor]]:
        data = self.decoded()
        train = 1 - self.val_fraction - self.test_fraction
        splits = split_by_group(np.arange(data["n_rows"]), self.split_seed, (train, self.val_fraction))
        out = {}
        for split, hub_rows in splits.items():
            keep = torch.from_numpy(np.isin(data["rows"].numpy(), hub_rows))
            out[split] = data["images"][keep], data["labels"][keep]
        return out


class IMDB(HubTextDataModule):
    task, source, num_classes = "imdb", "stanfordnlp/imdb", 2


class AGNews(HubTextDataModule):
    task, source, num_classes = "ag_news", "fancyzhx/ag_news", 4


class DBpedia14(HubTextDataModule):
    task, source, num_classes, text_column = "dbpedia14", "fancyzhx/dbpedia_14", 14, "content"


class YelpFull(HubTextDataModule):
    task, source, num_classes = "yelp_full", "Yelp/yelp_review_full", 5
