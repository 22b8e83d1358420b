"""The generated associative-recall task: labels decoded independently from the tokens, splits, loader."""

import numpy as np
import pytest
import torch

from asap.data import create_datamodule
from asap.data.recall import generate_recall, recall_vocab_size


def decode(tokens: torch.Tensor, num_keys: int, num_classes: int) -> tuple[int, np.ndarray, np.ndarray]:
    """The query key and the (key, value) of each pair token of one sequence, from the id layout."""
    ids = tokens.numpy()
    pair = ids[1:] - 1 - num_keys
    return int(ids[0]) - 1, pair // num_classes, pair % num_classes


def test_label_is_the_value_every_pair_with_the_queried_key_carries():
    num_keys, num_classes = 5, 4
    tokens, labels = generate_recall(300, seed=1, length=40, num_keys=num_keys, num_classes=num_classes)
    assert tokens.shape == (300, 40) and tokens.dtype == torch.long
    assert int(tokens.min()) >= 1 and int(tokens.max()) < recall_vocab_size(num_keys, num_classes)
    for sequence, label in zip(tokens, labels.tolist(), strict=True):
        query, keys, values = decode(sequence, num_keys, num_classes)
        assert 0 <= query < num_keys
        assert (keys == query).any(), "the queried key occurs"
        assert set(values[keys == query].tolist()) == {label}
        for key in np.unique(keys):  # one binding per example: a key always carries the same value
            assert len(set(values[keys == key].tolist())) == 1


def test_labels_are_balanced_and_bindings_differ_per_example():
    tokens, labels = generate_recall(4000, seed=2, length=64, num_keys=8, num_classes=10)
    shares = np.bincount(labels.numpy(), minlength=10) / 4000
    assert shares.max() < 0.13, "constant predictor near 1 / num_classes"
    # the same pair token does not decide the label: for the most frequent query, its pairs' value varies
    queries = tokens[:, 0].numpy()
    common = np.bincount(queries).argmax()
    assert len(set(labels.numpy()[queries == common].tolist())) == 10


def test_generation_is_seeded_per_split():
    a, b = generate_recall(10, "recall-test-0", 16), generate_recall(10, "recall-test-0", 16)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], generate_recall(10, "recall-val-0", 16)[0])


def test_generate_recall_rejects_bad_sizes():
    with pytest.raises(ValueError, match="length >= 2"):
        generate_recall(3, 0, length=1)
    with pytest.raises(ValueError, match="num_classes >= 2"):
        generate_recall(3, 0, num_classes=1)


def test_recall_datamodule_batches_and_caches(tmp_path):
    data = create_datamodule(
        "recall", data_dir=tmp_path, batch_size=8, train_size=32, val_size=8, test_size=16, length=24, num_keys=4
    )
    data.prepare_data()
    data.setup()
    assert (data.num_classes, data.vocab_size, data.max_len) == (10, 1 + 4 + 40, 24)
    tokens, labels = next(iter(data.test_dataloader()))
    assert tokens.shape == (8, 24) and labels.shape == (8,)
    assert [len(data.datasets[s]) for s in ("train", "val", "test")] == [32, 8, 16]
    assert len(list((tmp_path / "recall").glob("*.pt"))) == 1
