"""The frozen-layer and downstream benchmarks run on tiny models and report every column."""

import statistics

import pytest
import torch

from asap.bench import calibration_curve, frozen_layer_benchmark, length_generalisation
from asap.bench.speed import INFERENCE, speed_sweep
from asap.bench.timing import median_ms
from asap.data import create_datamodule
from asap.models import create_model

pytestmark = pytest.mark.slow


def test_frozen_layer_benchmark_columns_and_sanity(teacher, mnist):
    table = frozen_layer_benchmark(
        teacher,
        mnist.train_dataloader(),
        mnist.test_dataloader(),
        seq_len=17,
        seq_lens=(32, 64),
        max_test_batches=3,
        fidelity_batches=1,
        min_run_time=0.01,
        slices=16,
        num_batches=4,
    )
    print(table.T.to_string())
    assert list(table.variant) == ["teacher", "asap", "asap_one_sided", "asap_no_map", "sinkhorn_1it", "softmax"]
    for column in [
        "accuracy",
        "accuracy_vs_teacher",
        "plan_rel_error",
        "row_marginal_error",
        "col_marginal_error",
        "throughput_samples_per_s",
        "throughput_vs_teacher",
        "latency_ms_nmodel",
        "latency_ms_n32",
        "latency_ms_n64",
        "speedup_vs_teacher_n64",
        "time_vs_softmax_n64",
        "seq_len",
    ]:
        assert column in table and table[column].notna().all(), column
    by = table.set_index("variant")
    assert by.loc["teacher", "plan_rel_error"] == 0 and by.loc["teacher", "accuracy_vs_teacher"] == 1
    assert by.loc["teacher", "speedup_vs_teacher_n64"] == 1 and by.loc["softmax", "time_vs_softmax_n64"] == 1
    assert by.loc["asap", "plan_rel_error"] < by.loc["asap_no_map", "plan_rel_error"]
    assert by.loc["asap", "plan_rel_error"] < by.loc["softmax", "plan_rel_error"]
    assert by.loc["asap", "row_marginal_error"] < 1e-5, "two-sided: rows exact"
    assert by.loc["asap_one_sided", "col_marginal_error"] < 1e-5, "one-sided: columns exact"
    assert by.loc["softmax", "col_marginal_error"] > 1e-2, "softmax is not doubly stochastic"


def test_calibration_curve(teacher, mnist):
    curve = calibration_curve(
        teacher, mnist.train_dataloader(), mnist.test_dataloader(), sizes=(1, 4), max_test_batches=2, slices=8
    )
    assert list(curve.calib_batches) == [1, 4] and list(curve.calib_samples) == [64, 256]
    assert curve.notna().all().all() and (curve.teacher_accuracy == curve.teacher_accuracy[0]).all()


def test_length_generalisation_on_token_batches(data_dir):
    listops = create_datamodule(
        "listops", data_dir=data_dir, batch_size=8, train_size=80, val_size=8, test_size=48, min_len=16, max_len=64
    )
    listops.prepare_data()
    listops.setup("fit")
    listops.setup("test")
    model = create_model(
        "text_encoder",
        vocab_size=listops.vocab_size,
        max_len=64,
        num_classes=10,
        attention="sinkhorn",
        attention_options={"n_iters": 2},
        embed_dim=16,
        depth=1,
        num_heads=2,
    )
    table = length_generalisation(
        model.eval(),
        listops.train_dataloader(),
        listops.test_dataloader(),
        calib_max_len=40,
        buckets=[(16, 40), (40, 65)],
        num_batches=3,
        slices=8,
    )
    assert list(table.length_low) == [16, 40] and table.samples.sum() == 48
    assert {"teacher_accuracy", "asap_accuracy", "recovered"} <= set(table)
    with pytest.raises(ValueError, match="fewer than two"):
        length_generalisation(model, listops.train_dataloader(), listops.test_dataloader(), 10, [(16, 65)])


def test_median_ms_times_repeatedly():
    calls = []
    assert median_ms(lambda: calls.append(torch.ones(8).sum()), min_run_time=0.01) > 0
    assert len(calls) > 2, "warm-up plus repeated runs"


def test_speed_sweep_ratios_limits_and_repeats():
    """Ratios are relative to the rows they name; methods past their length limits are skipped; each median is
    that of the recorded repeats; peak memory comes from a fresh process per case."""
    table = speed_sweep(
        seq_lens=(16, 32),
        batch=1,
        heads=2,
        head_dim=8,
        slices=4,
        sliced_max_len=16,
        dense_max_len=32,
        min_run_time=0.01,
    )
    assert set(table[table.seq_len == 16].method) == set(INFERENCE)
    assert "sliced" not in set(table[table.seq_len == 32].method)
    by = table.set_index(["method", "seq_len"])
    assert by.loc[("sinkhorn", 32), "speedup_vs_teacher"] == 1 and by.loc[("softmax", 32), "time_vs_softmax"] == 1
    for row in table.itertuples():
        assert row.latency_ms == statistics.median(row.latency_runs_ms) > 0
    assert (table.peak_mem_mb >= 0).all(), "every case ran in its own process"
