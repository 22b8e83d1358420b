"""What the frontier tables say about each teacher's operating point, its compile options and calibration.

Exploratory: the verdict on the paper's claim is :mod:`asap.report.headline`'s, by the pre-registered rule.
Accuracy intervals here are the frontier's (Tango's 90% paired interval of the difference to the teacher).
"""

from __future__ import annotations

import pandas as pd

SIDE_ORDER = {True: 0, False: 1, "auto": 2}
COMPILE_OPTIONS = [(fit, side) for fit in ("ridge", "kl") for side in (True, False, "auto")]


def side_label(two_sided: object, head_sides: object) -> str:
    """``two``, ``one``, or ``auto 2212/2222`` (each head's choice: 2 two-sided, 1 one-sided); blank otherwise."""
    if two_sided is True or two_sided is False:
        return "two" if two_sided else "one"
    if two_sided == "auto":
        return f"auto {head_sides}"
    return ""


def features_label(features: str) -> str:
    """``""`` for the paper's sliced features, ``"+lse"`` for ``"sliced+lse"``."""
    return "" if features == "sliced" else "+" + features.removeprefix("sliced+")


def _at_operating_point(rows: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
    """The operating point's row, and every ASAP row at its ``L`` and directions (every compile option)."""
    point = rows[rows.operating_point.astype(bool)].iloc[0]
    at_point = rows[(rows.family == "asap") & (rows.slices == point.slices) & (rows.directions == point.directions)]
    return point, at_point


def compile_options_table(frontier: pd.DataFrame, finetuned: pd.DataFrame) -> pd.DataFrame:
    """Per teacher, at the operating point's ``L`` and directions: the accuracy recovery (ASAP's test accuracy
    over the teacher's) of every compile option (ridge or KL map; two-sided, one-sided or a side per head; with
    the other feature set, ``+lse``, at the operating point's side), of the maps learned while the teacher
    trained (``online``) and of the fine-tuned operating point."""
    records = []
    for task, teacher in teachers(frontier):
        rows = _rows(frontier, task, teacher)
        point, at_point = _at_operating_point(rows)
        teacher_acc = rows[rows.family == "teacher"].accuracy.iloc[0]
        record = {"task": task, "teacher": teacher, "teacher acc %": 100 * teacher_acc}
        side = side_label(point.two_sided, "")
        record["point"] = (
            f"L={int(point.slices)} {point.directions}, {point.fit} {side}{features_label(point.features)}"
        )
        same_features = at_point[at_point.features == point.features]
        for fit, side in COMPILE_OPTIONS:
            option = same_features[(same_features.fit == fit) & same_features.two_sided.eq(side)]
            label = f"{fit} {side_label(side, '').strip()}"
            record[label] = option.accuracy.iloc[0] / teacher_acc if len(option) else float("nan")
            if side == "auto" and len(option):
                record[f"{fit} auto sides"] = option.head_sides.iloc[0]
        for features in at_point.features.unique():
            if features == point.features:
                continue
            for fit in ("ridge", "kl"):
                option = at_point[(at_point.features == features) & (at_point.fit == fit)]
                label = f"{fit} {side_label(point.two_sided, '').strip()} {features_label(features)}"
                record[label] = option.accuracy.iloc[0] / teacher_acc if len(option) else float("nan")
        online = rows[rows.family == "asap_online"]
        record["online"] = online.accuracy.iloc[0] / teacher_acc if len(online) else float("nan")
        tuned = finetuned[(finetuned.task == task) & (finetuned.teacher == teacher)]
        record["fine-tuned"] = tuned.test_acc.mean() / teacher_acc if len(tuned) else float("nan")
        records.append(record)
    return pd.DataFrame(records).round(4).set_index(["task", "teacher"])


def layer_options_table(frontier: pd.DataFrame) -> pd.DataFrame:
    """Per teacher, every compile option at the operating point (rows as in :func:`compile_options_table`): the
    held-out calibration plan error of each layer (mean over heads), the plan error on test inputs (mean over
    layers), the accuracy recovery and the per-layer speed-up over the teacher at the longest fixed ``n``."""
    latency_n = fixed_length(frontier)
    tables = []
    for task, teacher in teachers(frontier):
        rows = _rows(frontier, task, teacher)
        _, at_point = _at_operating_point(rows)
        at_point = at_point.assign(order=at_point.two_sided.map(SIDE_ORDER)).sort_values(["features", "fit", "order"])
        teacher_acc = rows[rows.family == "teacher"].accuracy.iloc[0]
        layers = sorted(c for c in rows if c.startswith("heldout_plan_error_layer"))
        table = pd.DataFrame(
            {
                "task": task,
                "teacher": teacher,
                "features": at_point.features,
                "fit": at_point.fit,
                "sides": [
                    side_label(side, heads) for side, heads in zip(at_point.two_sided, at_point.head_sides, strict=True)
                ],
                **{f"held-out plan err L{c.removeprefix('heldout_plan_error_layer')}": at_point[c] for c in layers},
                "test plan err": at_point.plan_rel_error,
                "recovery": at_point.accuracy / teacher_acc,
                f"speed-up n={latency_n}": at_point[f"speedup_vs_teacher_n{latency_n}"],
            }
        )
        tables.append(table)
    return pd.concat(tables, ignore_index=True).round(4).set_index(["task", "teacher"])


def calibration_table(reports: pd.DataFrame) -> pd.DataFrame:
    """Per task, teacher and layer at the compiled operating point: held-out plan error, row KL and dual R^2 of
    the ridge map and of the deployed map (means over heads; the worst head's plan error beside)."""
    reports = reports.assign(fit=reports.get("fit", "ridge"))
    grouped = reports.groupby(["task", "variant", "layer", "fit"], sort=False)
    table = grouped.agg(
        heads=("head", "size"),
        ridge_plan_err=("ridge_plan_error", "mean"),
        plan_err=("plan_error", "mean"),
        worst_head_ridge=("ridge_plan_error", "max"),
        worst_head=("plan_error", "max"),
        ridge_kl=("ridge_kl", "mean"),
        kl=("kl", "mean"),
        ridge_r2=("ridge_r2", "mean"),
        r2=("r2", "mean"),
    )
    return table.round(4)


def fixed_length(frontier: pd.DataFrame) -> str:
    """The longest fixed ``n`` at which the frontier timed every layer (``latency_ms_n<N>`` columns)."""
    lengths = [int(c.removeprefix("latency_ms_n")) for c in frontier if c.removeprefix("latency_ms_n").isdigit()]
    if not lengths:
        raise ValueError("the frontier table has no latency at a fixed n")
    return str(max(lengths))


def _interval(low: float, high: float) -> str:
    """An interval of an accuracy difference, in points: ``[-0.4, +0.3]``."""
    return f"[{100 * low:+.1f}, {100 * high:+.1f}]"


def teachers(frontier: pd.DataFrame) -> list[tuple[str, str]]:
    return list(dict.fromkeys(zip(frontier.task, frontier.teacher, strict=True)))


def _rows(frontier: pd.DataFrame, task: str, teacher: str) -> pd.DataFrame:
    """One teacher's frontier, one row per variant (numbers averaged over seeds), indexed by variant."""
    rows = frontier[(frontier.task == task) & (frontier.teacher == teacher)]
    if "features" not in rows:  # tables written before the feature sets: every ASAP row used the sliced ones
        rows = rows.assign(features=rows.family.map(lambda family: "sliced" if family.startswith("asap") else None))
    labels = ["family", "directions", "two_sided", "fit", "features", "head_sides", "operating_point"]
    labels = [c for c in labels if c in rows]
    numbers = rows.drop(columns=labels).groupby("variant", sort=False).mean(numeric_only=True)
    return numbers.join(rows.groupby("variant", sort=False)[labels].first())


def _truncated(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows.family.isin(["truncated", "teacher"])].sort_values("iterations")


def operating_point_table(frontier: pd.DataFrame) -> pd.DataFrame:
    """Per teacher, at its operating point: the teacher, every truncation, ASAP two- and one-sided, ASAP without
    its map, with accuracy, agreement, KL, the 90% interval of the difference, plan errors and speed ratios."""
    latency_n = fixed_length(frontier)
    tables = []
    for task, teacher in teachers(frontier):
        rows = _rows(frontier, task, teacher)
        _, at_point = _at_operating_point(rows)
        at_point = at_point.assign(order=at_point.two_sided.map(SIDE_ORDER)).sort_values(["features", "fit", "order"])
        others = rows[rows.family.isin(["asap_no_map", "asap_online"])]
        keep = pd.concat([_truncated(rows), at_point.drop(columns="order"), others])
        table = pd.DataFrame(
            {
                "task": task,
                "teacher": teacher,
                "variant": keep.index,
                "fit": keep.fit,
                "features": keep.features,
                "sides": [side_label(side, heads) for side, heads in zip(keep.two_sided, keep.head_sides, strict=True)],
                "acc %": 100 * keep.accuracy,
                "constant %": 100 * keep.constant_predictor_acc,
                "agree %": 100 * keep.agreement,
                "KL": keep.kl_to_teacher,
                "Δacc 90% (pts)": [
                    _interval(low, high)
                    for low, high in zip(keep.accuracy_diff_low, keep.accuracy_diff_high, strict=True)
                ],
                "plan err": keep.plan_rel_error,
                "col err": keep.col_marginal_error,
                f"speed-up n={latency_n}": keep[f"speedup_vs_teacher_n{latency_n}"],
                "speed-up n=model": keep["speedup_vs_teacher_nmodel"],
                f"time/softmax n={latency_n}": keep[f"time_vs_softmax_n{latency_n}"],
                "throughput / teacher": keep.throughput_vs_teacher,
            }
        )
        tables.append(table)
    return pd.concat(tables, ignore_index=True).round(3).set_index(["task", "teacher"])
