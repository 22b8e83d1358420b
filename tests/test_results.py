"""The result files beside a benchmark table: predictions round-trip, hostile files fail in one line, the
split hash tells orders apart, example ids follow the loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Subset, TensorDataset

from asap.data.base import LengthBucketSampler, example_ids
from asap.results import (
    FrontierPredictions,
    per_round_ratio,
    predictions_path,
    read_timings,
    split_order_sha256,
    timings_path,
)


def make_predictions(count: int = 50, classes: int = 4) -> FrontierPredictions:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, classes, count)
    logits = rng.normal(size=(count, classes))
    predicted = np.stack([logits.argmax(-1), labels, rng.integers(0, classes, count)])
    ids = rng.permutation(count) + 100
    return FrontierPredictions(
        ("teacher", "asap", "sinkhorn_0it"), ids, labels, predicted, logits, logits + 1, "a" * 64
    )


def test_predictions_round_trip(tmp_path):
    original = make_predictions()
    path = original.save(tmp_path / "seed0.predictions.npz")
    back = FrontierPredictions.load(path)
    assert back.variants == original.variants and back.split_sha256 == original.split_sha256
    for name in ("example_ids", "labels", "predicted", "teacher_logits", "asap_logits"):
        np.testing.assert_array_equal(getattr(back, name), getattr(original, name))
    assert back.teacher_logits.dtype == np.float16 and back.predicted.dtype == np.int16
    assert (
        back.correct("asap").all() and back.correct("teacher").mean() == (original.predicted[0] == back.labels).mean()
    )
    with pytest.raises(KeyError, match="no variant 'nope'"):
        back.correct("nope")
    assert not list(tmp_path.glob("*.tmp*")), "the atomic write leaves no temporary file"


def test_paths_sit_beside_the_table():
    assert predictions_path("results/x/seed0.csv").name == "seed0.predictions.npz"
    assert timings_path("results/x/seed0.csv").name == "seed0.timings.json"


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda path: path.write_bytes(b"not a zip"), "not a readable predictions file"),
        (lambda path: np.savez(path, variants=np.array(["a"])), "missing"),
        (
            lambda path: np.savez(path, **{**_arrays(), "labels": np.array([object()] * 3)}),
            "object arrays \\(pickles\\)",
        ),
        (lambda path: np.savez(path, **{**_arrays(), "labels": np.zeros(3)}), "labels is float64"),
        (lambda path: np.savez(path, **{**_arrays(), "schema": np.array(99)}), "schema 99"),
        (lambda path: np.savez(path, **{**_arrays(), "extra": np.zeros(1)}), "unexpected \\['extra'\\]"),
    ],
)
def test_hostile_or_foreign_files_fail_in_one_line(tmp_path, write, message):
    path = tmp_path / "bad.npz"
    write(path)
    with pytest.raises(ValueError, match=message) as error:
        FrontierPredictions.load(path)
    assert "\n" not in str(error.value)


def _arrays() -> dict[str, np.ndarray]:
    p = make_predictions(3)
    return {
        "variants": np.array(p.variants),
        "example_ids": p.example_ids,
        "labels": p.labels,
        "predicted": p.predicted,
        "teacher_logits": p.teacher_logits,
        "asap_logits": p.asap_logits,
        "split_sha256": np.array(p.split_sha256),
        "schema": np.array(1),
    }


def test_inconsistent_predictions_are_refused():
    p = make_predictions(5)
    with pytest.raises(ValueError, match="predicted has shape"):
        FrontierPredictions(
            p.variants[:2], p.example_ids, p.labels, p.predicted, p.teacher_logits, p.asap_logits, "a" * 64
        )
    with pytest.raises(ValueError, match="example_ids must hold integers"):
        FrontierPredictions(p.variants, np.zeros(5), p.labels, p.predicted, p.teacher_logits, p.asap_logits, "a" * 64)
    with pytest.raises(ValueError, match="distinct example ids"):
        FrontierPredictions(
            p.variants, np.zeros(5, int), p.labels, p.predicted, p.teacher_logits, p.asap_logits, "a" * 64
        )


def test_split_hash_tells_orders_and_contents_apart():
    ids, labels = np.arange(4), np.array([0, 1, 0, 1])
    batches = [np.arange(6.0).reshape(2, 3), np.arange(6.0, 12.0).reshape(2, 3)]
    reference = split_order_sha256(ids, labels, batches)
    assert reference == split_order_sha256(ids.copy(), labels.copy(), [b.copy() for b in batches])
    assert reference != split_order_sha256(ids[::-1], labels, batches)
    assert reference != split_order_sha256(ids, labels, batches[::-1])
    assert reference != split_order_sha256(ids, labels, [batches[0], batches[1] + 1e-9])


def test_example_ids_follow_the_loader_through_subsets():
    data = TensorDataset(torch.arange(20.0), torch.zeros(20))
    subset = Subset(Subset(data, list(range(5, 20))), [9, 0, 3])
    ids = example_ids(DataLoader(subset, batch_size=2))
    assert ids.tolist() == [14, 5, 8]
    assert [x.item() for x, _ in DataLoader(subset, batch_size=2).dataset] == [14.0, 5.0, 8.0]
    lengths = np.array([5, 1, 3])
    bucketed = DataLoader(data, batch_sampler=LengthBucketSampler(lengths, 2, shuffle=False))
    assert example_ids(bucketed).tolist() == [1, 2, 0]
    with pytest.raises(ValueError, match="unshuffled"):
        example_ids(DataLoader(data, batch_size=2, shuffle=True))


def test_timings_are_checked_and_ratios_taken_per_round(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{"rounds_ms": {"a": [2, 4], "b": [1, 1]}, "threads": 1, "noise_floor_ratio": 1.0}')
    with pytest.raises(ValueError, match="without 'comparisons'"):
        read_timings(path)
    path.write_text("{broken")
    with pytest.raises(ValueError, match="not a readable timings file"):
        read_timings(path)
    assert per_round_ratio({"rounds_ms": {"a": [2, 4], "b": [1, 2]}}, "a", "b") == [2, 2]
    with pytest.raises(KeyError, match="no case 'c'"):
        per_round_ratio({"rounds_ms": {"a": [1]}}, "a", "c")
