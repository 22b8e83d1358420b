"""A killed training job continues from its last checkpoint: the samplers, the generators, the atomic files, and a
real training process killed mid-epoch whose rerun ends with the weights of an uninterrupted run, bit for bit."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from test_train import TINY_LISTOPS

from asap.data.base import EpochPermutation, LengthBucketSampler
from asap.train.resume import AtomicCheckpointIO, RNGStates


@pytest.mark.parametrize("kind", ["permutation", "buckets"])
def test_an_epoch_is_a_function_of_seed_and_epoch_and_resumes_part_way(kind):
    def sampler():
        if kind == "permutation":
            return EpochPermutation(40, seed=3)
        return LengthBucketSampler(np.arange(40) % 7, batch_size=4, shuffle=True, seed=3, bucket_batches=2)

    first = sampler()
    epochs = [list(first) for _ in range(3)]  # a loop that never calls set_epoch: the next epoch each pass
    assert epochs[0] != epochs[1] != epochs[2]
    again = sampler()
    again.set_epoch(2)
    assert list(again) == epochs[2], "epoch 2 drawn again from (seed, epoch) alone"
    resumed = sampler()
    resumed.resume(epoch=1, skip=5)
    assert list(resumed) == epochs[1][5:], "resumed 5 items into epoch 1"
    assert list(resumed) == epochs[2], "then the next epoch, from its start"
    other_seed = EpochPermutation(40, seed=4) if kind == "permutation" else None
    if other_seed is not None:
        assert list(other_seed) != epochs[0]


def test_generator_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    callback = RNGStates()
    state = callback.state_dict()
    torch.save({"rng": state}, tmp_path / "state.pt")
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    torch.manual_seed(123), np.random.seed(123), random.seed(123)
    callback.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True)["rng"])
    assert torch.rand(1).item() != expected[0][0].item(), "restored only when training starts"
    torch.manual_seed(123)
    callback.on_train_start(None, None)
    drawn = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(drawn[0], expected[0]) and np.array_equal(drawn[1], expected[1]) and drawn[2] == expected[2]


def test_a_checkpoint_write_that_fails_leaves_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": torch.tensor(1)}, path)

    def broken_save(obj, target):
        open(target, "wb").write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"step": torch.tensor(2)}, path)
    assert torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"], "no temporary file left behind"


def _train_command(tmp_path, run_dir, result):
    config = {
        **TINY_LISTOPS,
        "data": {**TINY_LISTOPS["data"], "train_size": 96, "batch_size": 4},  # 24 batches an epoch
        "model": {**TINY_LISTOPS["model"], "dropout": 0.1},  # the generators matter
        "trainer": {**TINY_LISTOPS["trainer"], "max_epochs": 2},
    }
    config_file = tmp_path / "listops.yaml"
    config_file.write_text(yaml.safe_dump(config))
    return [
        sys.executable, "-m", "asap", "train", "--task", "listops", "--variant", "sinkhorn", "--config",
        str(config_file), "--data-dir", str(tmp_path / "data"), "--run-dir", str(run_dir), "--result", str(result),
        "--checkpoint-every-s", "0", "--no-wandb",
    ]  # fmt: skip


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_a_training_process_killed_mid_epoch_resumes_to_the_uninterrupted_weights(tmp_path):
    """SIGKILL once a checkpoint past the first 5 steps of the first epoch exists (one is written every step),
    rerun the same command: its final weights, optimiser state and record equal an uninterrupted run's."""
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    reference = _train_command(tmp_path, tmp_path / "reference", tmp_path / "reference.json")
    subprocess.run(reference, check=True, env=env, capture_output=True, timeout=600)

    run_dir, result = tmp_path / "killed", tmp_path / "killed.json"
    command = _train_command(tmp_path, run_dir, result)
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last, step = run_dir / "progress" / "last.ckpt", 0
    deadline = time.monotonic() + 300
    while step < 5 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
        except (FileNotFoundError, RuntimeError, EOFError):
            continue
    assert process.poll() is None, "training ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = torch.load(last, map_location="cpu", weights_only=True)
    assert 0 < killed_at["global_step"] < 48 and not result.exists(), "killed mid-run, before its record"
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resuming" in rerun.stdout

    expected, resumed = _weights(tmp_path / "reference/progress/last.ckpt"), _weights(last)
    assert expected.keys() == resumed.keys()
    for name in expected:
        assert torch.equal(expected[name], resumed[name]), f"{name} differs after the resume"
    best = [_weights(path / "checkpoints/best.ckpt") for path in (tmp_path / "reference", run_dir)]
    assert all(torch.equal(best[0][name], best[1][name]) for name in best[0]), "the best checkpoints differ"
    records = [json.loads(path.read_text()) for path in (tmp_path / "reference.json", result)]
    assert records[0]["metrics"] == records[1]["metrics"]
    assert records[1]["cost"]["resumed"] and not records[0]["cost"]["resumed"]
