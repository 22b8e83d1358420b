"""The frontier and downstream benchmarks run on tiny models and report every column; the speed sweep."""

import statistics
import time

import pytest
import torch
from conftest import N_ITERS

from asap.bench import (
    accuracy_cost_frontier,
    calibration_curve,
    compare_predictions,
    frontier_points,
    length_generalisation,
)
from asap.bench.speed import (
    AUTO_FAMILIES,
    COMPILED,
    INFERENCE,
    derived_ratios,
    method,
    pass_count_limit,
    speed_sweep,
    streaming_methods,
)
from asap.compiler import OperatingPoint
from asap.data import create_datamodule
from asap.models import create_model

pytestmark = pytest.mark.slow


def test_frontier_columns_and_sanity(teacher, mnist):
    point = OperatingPoint(8, "random")
    table = accuracy_cost_frontier(
        teacher,
        mnist.train_dataloader(),
        mnist.test_dataloader(),
        point,
        seq_len=17,
        seq_lens=(64,),
        max_test_batches=3,
        fidelity_batches=1,
        min_run_time=0.01,
        slices=(4, 8),
        num_batches=4,
        compiled=False,
    )
    print(table.T.to_string())
    by = table.set_index("variant")
    # teacher, k = 0 .. T-1, the ridge sweep (2 L x 2 direction kinds x 2 sides, two of them at the operating
    # point), every compile option at the operating point (2 fits x 3 sides, and 2 fits with the sliced+lse
    # features at the operating point's side) and the ablation
    assert len(table) == 1 + N_ITERS + (8 - 2) + 6 + 2 + 1
    assert by.loc["asap"].operating_point and table.operating_point.sum() == 1
    at_point = table[(table.family == "asap") & (table.slices == 8) & (table.directions == "random")]
    options = zip(at_point.features, at_point.fit, at_point.two_sided.astype(str), strict=True)
    expected = [("sliced", fit, side) for fit in ("kl", "ridge") for side in ("True", "False", "auto")]
    assert sorted(options) == sorted(expected + [("sliced+lse", fit, "True") for fit in ("kl", "ridge")])
    layers = ["heldout_plan_error_layer0", "heldout_plan_error_layer1"]
    assert (
        at_point[layers].notna().all().all()
        and table[table.family.isin(["teacher", "truncated"])][layers].isna().all().all()
    )
    lse = by.loc["asap_L8_random_two_sided_kl_lse"]
    assert lse.features == "sliced+lse" and lse.heldout_plan_error_layer0 > 0
    assert list(table[table.family == "truncated"].iterations) == list(range(N_ITERS))
    for column in [
        "accuracy",
        "agreement",
        "kl_to_teacher",
        "accuracy_diff_low",
        "accuracy_diff_high",
        "plan_rel_error",
        "col_marginal_error",
        "latency_ms_nmodel",
        "latency_ms_n64",
        "speedup_vs_teacher_n64",
        "time_vs_softmax_nmodel",
        "speedup_vs_strongest_nmodel",
        "latency_iqr_ms_n64",
        "noise_floor_ratio",
        "timing_threads",
    ]:
        assert column in table and table[column].notna().all(), column
    # end to end: the teacher and the operating point only
    assert set(table[table.throughput_vs_teacher.notna()].variant) == {"teacher", "asap"}
    # identical computations are timed once: the map's ablation and the KL map run what the ridge map runs
    assert by.loc["asap", "latency_ms_n64"] == by.loc["asap_no_map", "latency_ms_n64"]
    assert by.loc["asap", "latency_ms_n64"] == by.loc["asap_L8_random_two_sided_kl", "latency_ms_n64"]
    timings = table.attrs["timings"]
    assert all(len(rounds) == 15 for rounds in timings["rounds_ms"].values())
    for length, comparison in timings["comparisons"].items():
        assert comparison["strongest_teacher"] in {"sinkhorn_lean", "sinkhorn_flash", "sinkhorn_unrolled"}
        assert len(comparison["speedup_rounds"]) == 15
        assert (table[f"strongest_teacher_n{length}"] == comparison["strongest_teacher"]).all()
    teacher_row = by.loc["teacher"]
    assert teacher_row.agreement == 1 and teacher_row.kl_to_teacher == 0 and teacher_row.plan_rel_error == 0
    assert teacher_row.accuracy_diff == 0 and teacher_row.accuracy_diff_low < 0
    assert teacher_row.accuracy_diff_low == pytest.approx(-teacher_row.accuracy_diff_high), "no discordant pair"
    assert (table.accuracy_diff_low <= table.accuracy_diff + 1e-12).all()
    assert (table.accuracy_diff <= table.accuracy_diff_high + 1e-12).all()
    assert by.loc["sinkhorn_0it", "time_vs_softmax_n64"] == 1, "k = 0 is timed as fused softmax"
    assert by.loc["asap", "plan_rel_error"] < by.loc["asap_no_map", "plan_rel_error"]
    assert by.loc["asap", "plan_rel_error"] < by.loc["sinkhorn_0it", "plan_rel_error"]
    assert by.loc["asap", "row_marginal_error"] < 1e-5, "two-sided: rows exact"
    assert by.loc["asap_L8_random_one_sided_ridge", "col_marginal_error"] < 1e-5, "one-sided: columns exact"
    assert by.loc["sinkhorn_0it", "col_marginal_error"] > 1e-2, "softmax is not doubly stochastic"
    predicted = table.attrs["predictions"]
    assert predicted.variants == tuple(table.variant) and len(predicted.labels) == table.test_samples.iloc[0]
    for variant, accuracy in zip(table.variant, table.accuracy, strict=True):
        assert predicted.correct(variant).mean() == pytest.approx(accuracy), variant
    assert (predicted.teacher_logits.argmax(-1) == predicted.predicted[0]).mean() > 0.99, "float16 logits"
    assert len(set(predicted.example_ids)) == len(predicted.labels)
    with pytest.raises(ValueError, match="not among the candidates"):
        frontier_points(teacher, mnist.train_dataloader(), OperatingPoint(6, "random"), slices=(4, 8))


def test_compare_predictions_against_hand_counts():
    labels = torch.tensor([0, 1, 1, 0, 2, 2, 1, 0])
    teacher_logits = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 0, 2, 2, 0, 1]), 3).float() * 4
    student_logits = torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 0, 2, 1, 1, 1]), 3).float() * 4
    scores = compare_predictions(student_logits, teacher_logits, labels)
    assert scores["accuracy"] == 5 / 8 and scores["agreement"] == 5 / 8
    assert scores["accuracy_diff"] == pytest.approx(5 / 8 - 6 / 8)
    assert scores["accuracy_diff_low"] < scores["accuracy_diff"] < scores["accuracy_diff_high"]
    p, q = teacher_logits.softmax(-1), student_logits.softmax(-1)
    assert scores["kl_to_teacher"] == pytest.approx((p * (p / q).log()).sum(-1).mean().item(), rel=1e-5)


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


def test_speed_sweep_ratios_limits_and_repeats():
    """Ratios are relative to the rows they name; methods past their length limits are skipped; each median is
    that of the recorded repeats. (Memory: a process per case, tested on its own below.)"""
    table = speed_sweep(
        seq_lens=(16, 32),
        batch=1,
        heads=2,
        head_dim=8,
        slices=4,
        sliced_max_len=16,
        dense_max_len=32,
        min_run_time=0.01,
        measure_memory=False,
    )
    assert set(table[table.seq_len == 16].method) == set(INFERENCE)
    assert "sliced" not in set(table[table.seq_len == 32].method)
    by = table.set_index(["method", "seq_len"])
    assert by.loc[("sinkhorn", 32), "speedup_vs_teacher"] == 1 and by.loc[("softmax", 32), "time_vs_softmax"] == 1
    assert by.loc[("sinkhorn_flash", 32), "speedup_vs_flash"] == 1
    assert by.loc[("sinkhorn_unrolled", 32), "speedup_vs_unrolled"] == 1
    ratio = by.loc[("asap_fused", 32), "latency_ms"] / by.loc[("sinkhorn_flash", 32), "latency_ms"]
    assert by.loc[("asap_fused", 32), "speedup_vs_flash"] == pytest.approx(1 / ratio)
    for row in table.itertuples():
        assert row.latency_ms == statistics.median(row.latency_runs_ms) > 0 and len(row.latency_runs_ms) == 15
    for seq_len, rows in table.groupby("seq_len"):
        (strongest,) = set(rows.strongest_teacher)
        assert (
            strongest
            == rows.set_index("method").latency_ms[["sinkhorn", "sinkhorn_flash", "sinkhorn_unrolled"]].idxmin()
        )
        assert by.loc[(strongest, seq_len), "speedup_vs_strongest"] == 1
    assert table.noise_floor_ratio.between(0.2, 5).all() and (table.timing_rounds == 15).all()
    assert table.peak_mem_mb.isna().all(), "memory off: no number stands in for it"
    assert streaming_methods(training=True) == ("softmax", "sinkhorn_flash")
    assert streaming_methods(training=False) == (
        "softmax",
        "sinkhorn_flash",
        "asap_fused",
        "asap_lse_fused",
        "fused_pass",
        "lse_pass",
        "dual_features",
    )
    row = by.loc[("sinkhorn_auto", 32)]  # each length's r, phi, limit and the auto rows' choice, from its latencies
    latency = by.xs(32, level="seq_len").latency_ms
    assert row.lse_pass_ratio == pytest.approx(latency["lse_pass"] / latency["fused_pass"])
    assert row.features_ratio == pytest.approx(latency["dual_features"] / latency["fused_pass"])
    assert row.pass_limit == pytest.approx(pass_count_limit(row.lse_pass_ratio, row.features_ratio, 3))
    fastest = latency[["sinkhorn", "sinkhorn_flash"]].min()
    assert row.auto_vs_fastest == pytest.approx(fastest / latency["sinkhorn_auto"])
    assert by.loc[("softmax", 32)].auto_vs_fastest != by.loc[("softmax", 32)].auto_vs_fastest, "NaN off the auto rows"


def test_pass_count_limit_and_derived_ratios():
    """The limit (2T r + 1) / (r + 1 + phi) at hand-computed points, and the columns read off one length."""
    assert pass_count_limit(1.0, 0.0, 3) == 3.5 and pass_count_limit(0.5, 0.25, 10) == pytest.approx(11 / 1.75)
    assert pass_count_limit(1.0, 0.0, 0) == 0.5, "T = 0: softmax against ASAP's two passes"
    with pytest.raises(ValueError, match="r > 0"):
        pass_count_limit(0.0, 0.1, 3)
    latency = {"fused_pass": 4.0, "lse_pass": 2.0, "dual_features": 1.0, "asap_dense": 9.0, "asap_fused": 6.0}
    columns = derived_ratios({**latency, "asap_auto": 7.5}, n_iters=3)
    assert columns["asap_auto"] == {
        "lse_pass_ratio": 0.5,
        "features_ratio": 0.25,
        "pass_limit": pytest.approx(4 / 1.75),
        "auto_vs_fastest": 0.8,
    }
    assert columns["asap_fused"]["auto_vs_fastest"] != columns["asap_fused"]["auto_vs_fastest"]  # NaN
    missing = derived_ratios({"asap_fused": 1.0, "asap_auto": 1.0}, n_iters=3)["asap_auto"]
    assert missing["auto_vs_fastest"] == 1.0 and missing["pass_limit"] != missing["pass_limit"]


def test_speed_methods_of_one_normaliser_compute_one_value():
    """Every timed row of a normaliser (implementations, auto, the v0 baselines) computes the same attention, so
    their latencies compare like for like (float64; d = 32 puts the log-sum-exp passes on the blocked route)."""
    families = [
        ("sinkhorn", "sinkhorn_flash", "sinkhorn_unrolled", "sinkhorn_auto", "sinkhorn_flash_v0"),
        ("asap_dense", "asap_fused", "asap_auto", "asap_fused_v0"),
    ]
    for dtype, tolerance in ((torch.float64, 1e-10), (torch.float32, 1e-5)):  # float32: v0's packed sort keys
        generator = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(1, 2, 70, 32, generator=generator, dtype=dtype) for _ in range(3))
        for family in families:
            outputs = {name: method(name, 3, 8, 32, training=False)(q, k, v) for name in family}
            reference = outputs[family[0]]
            for name, out in outputs.items():
                assert (out - reference).abs().max() < tolerance * reference.abs().max(), (name, dtype)
    assert not torch.allclose(outputs["asap_fused"], method("sinkhorn", 3, 8, 32, False)(q, k, v), atol=1e-3)


def test_peak_memory_per_case_sees_the_n_by_n_scores_only_where_they_are_held():
    """Each case runs in its own process: the lean teacher holds the n x n scores (at least one
    such tensor at its peak), the flash teacher streams them (a small fraction of one)."""
    shape = dict(batch=1, heads=2, head_dim=8, n_iters=1, slices=4, device="cpu")
    seq_len = 1024
    scores_mb = shape["batch"] * shape["heads"] * seq_len**2 * 4 / 2**20  # one float32 n x n tensor: 8 MB
    methods = ("softmax", "sinkhorn", "sinkhorn_flash")
    table = speed_sweep(seq_lens=(seq_len,), methods=methods, min_run_time=0.01, **shape)
    memory = table.set_index("method").peak_mem_mb
    assert memory["sinkhorn"] >= 0.9 * scores_mb, (memory.to_dict(), scores_mb)
    assert 0 <= memory["sinkhorn_flash"] < 0.25 * scores_mb, (memory.to_dict(), scores_mb)


def test_speed_sweep_compiled_rows():
    """At the compiled lengths each chosen method with a compiled form gets its own row with its speed-up over
    eager (sinkhorn_unrolled has none)."""
    table = speed_sweep(
        seq_lens=(16,),
        batch=1,
        heads=2,
        head_dim=8,
        slices=4,
        min_run_time=0.01,
        methods=("softmax", "sinkhorn_unrolled", "asap_fused"),
        measure_memory=False,
        compiled_seq_lens=(16,),
    )
    compiled = table[table.method.isin(COMPILED)].set_index("method")
    assert set(compiled.index) == {"softmax_compiled", "asap_fused_compiled"}
    eager = table.set_index("method").latency_ms
    for name, row in compiled.iterrows():
        assert row.speedup_vs_eager == pytest.approx(eager[name.removesuffix("_compiled")] / row.latency_ms)
    assert table[~table.method.isin(COMPILED)].speedup_vs_eager.isna().all()


def test_frontier_slices_keep_the_operating_point_and_one_sided_choice_is_checked(teacher, mnist):
    from asap.bench.frontier import frontier_slices

    assert frontier_slices(16, (0.25, 1, 4), OperatingPoint(8, "pca")) == [4, 8, 16, 64]
    assert frontier_slices(16, (0.25, 1, 4), OperatingPoint(16, "pca")) == [4, 16, 64]
    with pytest.raises(ValueError, match="one_sided"):
        frontier_points(teacher, mnist.train_dataloader(), OperatingPoint(8, "random"), one_sided="some")


def test_layer_call_takes_compiled_normalisers(teacher):
    """The frontier times torch.compile'd teachers in the layer's place (an OptimizedModule has no truth value)."""
    from asap.bench.frontier import layer_call, teacher_implementations

    eager = teacher_implementations(teacher, compiled=False)["sinkhorn_flash"]
    compiled = torch.compile(eager, backend="eager")  # dynamo's wrapper without inductor's compile time
    torch.testing.assert_close(
        layer_call(teacher, 12, 1, normaliser=compiled)(), layer_call(teacher, 12, 1, normaliser=eager)()
    )


def test_interleaved_rounds_time_one_block_per_case_per_round_and_check_the_noise_floor():
    from asap.bench.timing import NOISE_FLOOR_SUFFIX, interleaved_rounds

    calls = []
    times = interleaved_rounds(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=15, block_s=0.0, progress=False
    )
    assert all(len(values) == 15 for values in times.rounds_ms.values()) and times.block_calls == {"a": 1, "b": 1}
    assert calls[:4] == ["a", "a", "b", "b"], "a warm-up call and a sizing call per case"
    assert calls[4:] == ["a", "b", "b", "a"] * 7 + ["a", "b"], "each round one block per case, starts rotating"
    assert len(times.ratio_rounds("a", "b")) == 15 and len(times.load_before) == 3

    # a noise-floor pair whose second copy is always twice as slow fails, reruns once, and says so. Each attempt
    # makes 4 warm-up and sizing calls, then rounds alternate (x, x#) and (x#, x), one call per block: calls
    # 1 and 2 of every 4 are the copy's, so it is the slow one in every round (and in every attempt).
    state = {"calls": 0}

    def uneven():
        slow = state["calls"] % 4 in (1, 2)
        state["calls"] += 1
        time.sleep(0.004 if slow else 0.002)

    times = interleaved_rounds({"x": uneven}, rounds=4, block_s=0.0, noise_floor="x", progress=False)
    assert "x" + NOISE_FLOOR_SUFFIX in times.rounds_ms and times.noise_floor_attempts == 2
    assert not 0.91 <= times.noise_floor_ratio <= 1.10
    steady = interleaved_rounds(
        {"x": lambda: time.sleep(0.002)}, rounds=5, block_s=0.0, noise_floor="x", progress=False
    )
    assert steady.noise_floor_attempts == 1 and 0.91 <= steady.noise_floor_ratio <= 1.10


def test_every_teacher_implementation_computes_the_teacher(teacher):
    from asap.bench.frontier import teacher_implementations
    from asap.nn import attention_layers

    layer = next(iter(attention_layers(teacher).values()))
    implementations = teacher_implementations(teacher, compiled=True)
    assert set(implementations) == {
        f"sinkhorn_{i}{c}" for i in ("lean", "flash", "unrolled") for c in ("", "_compiled")
    }
    shape = (1, layer.num_heads, 12, layer.head_dim)
    q, k, v = (torch.randn(shape, generator=torch.Generator().manual_seed(i)) for i in range(3))
    reference = layer.normaliser(q, k, v)
    for name, normaliser in implementations.items():
        torch.testing.assert_close(normaliser(q, k, v), reference, atol=1e-5, rtol=1e-4, msg=name)


def test_speed_benchmark_times_later_thread_counts_at_their_lengths_only(tmp_path, monkeypatch):
    import functools

    import pandas as pd

    from asap.bench import speed

    calls = []

    @functools.wraps(speed.speed_sweep)  # keeps the signature, whose defaults speed_benchmark reads
    def sweep(**options):  # what each sweep is asked to time
        calls.append({key: options[key] for key in ("threads", "seq_lens", "measure_memory", "compiled_seq_lens")})
        return pd.DataFrame({"seq_len": options["seq_lens"], "latency_runs_ms": [[1.0]] * len(options["seq_lens"])})

    monkeypatch.setattr(speed, "speed_sweep", sweep)
    from asap.bench.run import speed_benchmark

    speed_benchmark(tmp_path / "s.csv", threads=(1, 2), thread_seq_lens=[32], seq_lens=[16, 32], compiled_seq_lens=[32])
    assert calls == [
        {"threads": 1, "seq_lens": [16, 32], "measure_memory": True, "compiled_seq_lens": [32]},
        {"threads": 2, "seq_lens": [32], "measure_memory": False, "compiled_seq_lens": []},
    ]
    calls.clear()
    speed_benchmark(tmp_path / "s.csv", threads=(1, 2), seq_lens=[16, 32])
    assert [call["seq_lens"] for call in calls] == [[16, 32], [16, 32]], "without thread_seq_lens: every n"
    with pytest.raises(ValueError, match="thread_seq_lens \\[64\\] must be among the seq_lens"):
        speed_benchmark(tmp_path / "s.csv", threads=(1, 2), thread_seq_lens=[64], seq_lens=[16, 32])


@pytest.mark.parametrize("pool, extra", [("mean", 0), ("cls", 1), ("first", 0)])
def test_model_sequence_length_counts_the_class_token(tmp_path, pool, extra):
    from asap.bench.run import model_sequence_length
    from asap.data import create_datamodule
    from asap.models.text import TextClassifier

    data = create_datamodule(
        "listops", data_dir=tmp_path, batch_size=4, train_size=8, val_size=4, test_size=12, min_len=16, max_len=40
    )
    data.setup()
    widths = sorted(tokens.shape[1] for tokens, _ in data.test_dataloader())
    model = TextClassifier(data.vocab_size, data.max_len, data.num_classes, embed_dim=8, num_heads=1, pool=pool)
    assert model_sequence_length(model, data) == widths[len(widths) // 2] + extra


def test_kernel_breakdown_accounts_for_each_methods_time():
    """Per method its top operators and the rest: the shares add up to 1, the fused methods show the fused kernel
    and the lean teacher does not (so the breakdown can tell them apart)."""
    from asap.bench.speed import KERNEL_METHODS, kernel_breakdown
    from asap.results import SPEED_AUTO_ROWS, SPEED_PIECES

    table = kernel_breakdown(64, batch=1, heads=2, head_dim=8, n_iters=2, slices=4, calls=2, top=3)
    assert set(table.method) == set(KERNEL_METHODS["inference"])
    for name, rows in table.groupby("method"):
        assert rows.share.sum() == pytest.approx(1.0) and len(rows) <= 4, name
        assert (rows.self_ms_per_call >= 0).all() and (rows.calls_per_call > 0).all()
    fused_ops = set(table[table.method == "fused_pass"].operator)
    assert any("flash_attention" in op for op in fused_ops), fused_ops
    assert not any("flash_attention" in op for op in table[table.method == "sinkhorn"].operator)
    assert set(SPEED_AUTO_ROWS) == set(AUTO_FAMILIES) and set(SPEED_PIECES) <= set(streaming_methods(False))
