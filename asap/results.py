"""The files a benchmark job leaves beside its table, and how they are read back: one home for their schemas.

numpy only, so that a reviewer reads them (and recomputes the verdict, :mod:`asap.report.headline`) without
torch. Beside a frontier table ``<name>.csv``:

- ``<name>.predictions.npz`` (:class:`FrontierPredictions`): per test example, in the order the models saw it,
  its id in the test split, its label, every frontier point's predicted class, and the teacher's and the
  operating point's logits in float16; a sha256 of the examples as evaluated (ids, labels, input tensors) ties
  it to one test split in one order. Read with ``np.load(allow_pickle=False)``: loading runs no code.
- ``<name>.timings.json``: every case's timed rounds (:class:`asap.bench.timing.RoundTimes`) and, per length,
  the strongest teacher, ASAP at its fastest and the per-round speed-ups of the one over the other.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PREDICTIONS_SUFFIX = ".predictions.npz"
TIMINGS_SUFFIX = ".timings.json"
PREDICTIONS_SCHEMA = 1
# Rows of the speed table (asap.bench.speed) that are pieces of a method (a full fused pass, the log-sum-exp-only
# pass, ASAP's features: r and phi are read off them) or a rule's choice among its implementations (auto): in
# the table, not among the methods the speed figure draws
SPEED_PIECES = ("fused_pass", "lse_pass", "dual_features")
SPEED_AUTO_ROWS = ("sinkhorn_auto", "asap_auto")


def bench_table_paths(results: str | Path, kind: str) -> list[Path]:
    """Every ``bench/<kind>/<task>/<teacher>/seed<k>.csv`` under a profile's results (``kind``: ``frontier``,
    ``downstream``), sorted; a ``FileNotFoundError`` when there is none."""
    paths = sorted(Path(results).glob(f"bench/{kind}/*/*/seed*.csv"))
    if not paths:
        raise FileNotFoundError(f"no {kind} benchmark tables under {results}/bench/{kind}")
    return paths


def predictions_path(table: str | Path) -> Path:
    """``seed0.predictions.npz`` beside the frontier table ``seed0.csv``."""
    return Path(table).with_suffix(PREDICTIONS_SUFFIX)


def timings_path(table: str | Path) -> Path:
    """``seed0.timings.json`` beside the frontier table ``seed0.csv``."""
    return Path(table).with_suffix(TIMINGS_SUFFIX)


def weights_record_path(weights: str | Path) -> Path:
    """The record beside a weights-only checkpoint (its sha256 and provenance): ``seed0.ckpt`` -> ``seed0.json``."""
    return Path(weights).with_suffix(".json")


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` into a temporary file beside ``path``, then a rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def split_order_sha256(ids: np.ndarray, labels: np.ndarray, inputs: Iterable[np.ndarray]) -> str:
    """sha256 of the test examples as evaluated: ids and labels (int64) and each input batch (its shape, dtype
    and bytes), in order. Two prediction files with equal hashes scored the same examples in the same order."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(ids, dtype=np.int64).tobytes())
    digest.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    for batch in inputs:
        batch = np.ascontiguousarray(batch)
        digest.update(f"{batch.shape}{batch.dtype.str}".encode())
        digest.update(batch.tobytes())
    return digest.hexdigest()


_ARRAYS = {  # name -> (dtype kind, number of dimensions)
    "variants": ("U", 1),
    "example_ids": ("i", 1),
    "labels": ("i", 1),
    "predicted": ("i", 2),
    "teacher_logits": ("f", 2),
    "asap_logits": ("f", 2),
    "split_sha256": ("U", 0),
    "schema": ("i", 0),
}


@dataclass(frozen=True)
class FrontierPredictions:
    """Per-example predictions of every point of one frontier (shapes: ``P`` points, ``N`` examples, ``C``
    classes): ``variants`` (P,), ``example_ids`` (N,) indices into the test split, ``labels`` (N,),
    ``predicted`` (P, N) classes, ``teacher_logits`` and ``asap_logits`` (N, C) float16 (``asap``: the operating
    point), ``split_sha256`` (:func:`split_order_sha256`).

    >>> p = FrontierPredictions(("teacher", "asap"), np.arange(3), np.array([0, 1, 1]),
    ...     np.array([[0, 1, 0], [0, 1, 1]]), np.zeros((3, 2)), np.zeros((3, 2)), "0" * 64)
    >>> p.correct("asap").tolist()
    [True, True, True]
    """

    variants: tuple[str, ...]
    example_ids: np.ndarray
    labels: np.ndarray
    predicted: np.ndarray
    teacher_logits: np.ndarray
    asap_logits: np.ndarray
    split_sha256: str

    def __post_init__(self) -> None:
        variants = tuple(str(v) for v in self.variants)
        object.__setattr__(self, "variants", variants)
        for name, dtype in (("example_ids", np.int64), ("labels", np.int64), ("predicted", np.int16)):
            value = np.asarray(getattr(self, name))
            if value.dtype.kind not in "iu" or (value.size and (value.min() < 0 or value.max() > np.iinfo(dtype).max)):
                raise ValueError(f"predictions: {name} must hold integers in [0, {np.iinfo(dtype).max}]")
            object.__setattr__(self, name, value.astype(dtype))
        for name in ("teacher_logits", "asap_logits"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.float16))
        count = len(self.labels)
        if len(set(variants)) != len(variants):
            raise ValueError(f"predictions: repeated variant names in {variants}")
        if self.example_ids.shape != (count,) or len(np.unique(self.example_ids)) != count:
            raise ValueError(f"predictions: need {count} distinct example ids, got shape {self.example_ids.shape}")
        if self.predicted.shape != (len(variants), count):
            raise ValueError(f"predictions: predicted has shape {self.predicted.shape}, need {(len(variants), count)}")
        for name in ("teacher_logits", "asap_logits"):
            logits = getattr(self, name)
            if logits.ndim != 2 or len(logits) != count:
                raise ValueError(f"predictions: {name} has shape {logits.shape}, need ({count}, classes)")
        if len(self.split_sha256) != 64:
            raise ValueError(f"predictions: split_sha256 must be 64 hex digits, got {self.split_sha256!r}")

    def classes(self, variant: str) -> np.ndarray:
        """The class ``variant`` predicted for each example ((N,))."""
        if variant not in self.variants:
            raise KeyError(f"predictions: no variant {variant!r} (have {', '.join(self.variants)})")
        return self.predicted[self.variants.index(variant)]

    def correct(self, variant: str) -> np.ndarray:
        """Whether ``variant`` predicted each example's label (bool, (N,))."""
        return self.classes(variant) == self.labels

    def save(self, path: str | Path) -> Path:
        """Write compressed, atomically."""
        arrays = {
            "variants": np.array(self.variants),
            "example_ids": self.example_ids,
            "labels": self.labels,
            "predicted": self.predicted,
            "teacher_logits": self.teacher_logits,
            "asap_logits": self.asap_logits,
            "split_sha256": np.array(self.split_sha256),
            "schema": np.array(PREDICTIONS_SCHEMA),
        }

        def write(tmp: Path) -> None:
            with tmp.open("wb") as file:
                np.savez_compressed(file, **arrays)

        return write_atomic(path, write)

    @classmethod
    def load(cls, path: str | Path) -> FrontierPredictions:
        """Read a file written by :meth:`save`; anything else (a pickle, missing or extra arrays, wrong types)
        is a one-line ``ValueError`` naming the problem."""
        try:
            with open(path, "rb") as file:
                if file.read(4) != b"PK\x03\x04":  # np.load would take anything else for a pickle (and refuse it)
                    raise ValueError(f"{path}: not a readable predictions file (not an .npz archive)")
            with np.load(path, allow_pickle=False) as archive:
                names = set(archive.files)
                if names != set(_ARRAYS):
                    missing, extra = sorted(set(_ARRAYS) - names), sorted(names - set(_ARRAYS))
                    raise ValueError(f"{path}: not a predictions file (missing {missing}, unexpected {extra})")
                arrays = {name: archive[name] for name in _ARRAYS}
        except (OSError, zipfile.BadZipFile, EOFError) as error:
            raise ValueError(f"{path}: not a readable predictions file ({error})") from None
        except ValueError as error:
            if "pickle" in str(error).lower():
                raise ValueError(f"{path}: holds object arrays (pickles), which are never loaded") from None
            raise
        for name, (kind, ndim) in _ARRAYS.items():
            if arrays[name].dtype.kind != kind or arrays[name].ndim != ndim:
                raise ValueError(f"{path}: {name} is {arrays[name].dtype} with {arrays[name].ndim} dims")
        if int(arrays["schema"]) != PREDICTIONS_SCHEMA:
            raise ValueError(f"{path}: schema {int(arrays['schema'])}, this reader knows {PREDICTIONS_SCHEMA}")
        return cls(
            variants=tuple(arrays["variants"].tolist()),
            example_ids=arrays["example_ids"],
            labels=arrays["labels"],
            predicted=arrays["predicted"],
            teacher_logits=arrays["teacher_logits"],
            asap_logits=arrays["asap_logits"],
            split_sha256=str(arrays["split_sha256"]),
        )


def read_timings(path: str | Path) -> dict[str, Any]:
    """A ``.timings.json`` sidecar, checked for what the verdict reads: ``rounds_ms`` per case,
    ``noise_floor_ratio`` and per length ``comparisons`` with ``speedup_rounds``."""
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not a readable timings file ({error})") from None
    for key in ("rounds_ms", "comparisons", "noise_floor_ratio", "threads"):
        if key not in record:
            raise ValueError(f"{path}: timings file without {key!r}")
    for length, comparison in record["comparisons"].items():
        missing = {"strongest_teacher", "fastest_asap", "speedup_rounds"} - set(comparison)
        if missing:
            raise ValueError(f"{path}: comparison at n={length} without {sorted(missing)}")
    return record


def per_round_ratio(timings: dict[str, Any], numerator: str, denominator: str) -> list[float]:
    """``t_numerator,r / t_denominator,r`` for each round ``r`` of a timings record (a speed-up of the
    denominator over the numerator)."""
    rounds = timings["rounds_ms"]
    for case in (numerator, denominator):
        if case not in rounds:
            raise KeyError(f"timings: no case {case!r}")
    return [a / b for a, b in zip(rounds[numerator], rounds[denominator], strict=True)]
