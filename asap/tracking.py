"""Weights & Biases for every workflow job: one run per job, the same identity everywhere, and a reader for
the offline runs they leave behind.

Each job (a Snakemake rule: :data:`JOB_TYPES`) is one W&B run: ``group`` is ``<profile>/<task>`` (or
``<profile>`` for jobs spanning tasks), ``job_type`` the rule, tags ``profile:``/``task:``/``variant:``/
``seed:``, the job's options and :func:`asap.provenance.provenance` as its config. Tables go in as
``wandb.Table`` (so W&B can plot their columns), headline numbers in the summary, figures as images and
models/checkpoints as artifacts *by reference* (a ``file://`` URI and checksum, never a second copy).

Runs are offline unless ``WANDB_MODE`` says otherwise (``wandb sync`` uploads them later); with
``WANDB_MODE=disabled`` or ``enabled=False`` :func:`job_run` yields a :class:`JobRun` whose methods do nothing,
so callers never branch. The ``log_<job>`` helpers are what the CLI calls, so the keys the dashboard
(:mod:`asap.dashboard`) reads are the keys the jobs write, and the tests check them on real offline runs
read back with :func:`read_offline_run`.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    import pandas as pd

JOB_TYPES = ("data", "train", "compile", "frontier", "downstream", "finetune", "speed", "report")
MODES = ("online", "offline", "disabled")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif")
TAG_MAX_CHARS = 64  # W&B rejects longer tags
_ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class Identity(TypedDict):
    """What names a job's run: pass it as keyword arguments to ``wandb.init`` (or Lightning's ``WandbLogger``)."""

    group: str
    job_type: str
    tags: list[str]
    name: str


def job_identity(
    job_type: str,
    *,
    profile: str | None,
    task: str | None = None,
    variant: str | None = None,
    seed: int | None = None,
    extra: Mapping[str, str] | None = None,
) -> Identity:
    """The run identity of one job: ``group`` ``<profile>/<task>`` (``<profile>`` for jobs over every task),
    ``job_type`` the rule, tags ``profile:..``, ``task:..``, ``variant:..``, ``seed:..`` (and ``key:value`` for
    each of ``extra``, e.g. ``{"mode": "inference"}`` for the speed job, which has no task), and a name joining
    them (``compile-mnist-sinkhorn-seed0``). Grouping by ``group`` and filtering by tags is how the dashboard
    slices runs, so every job must name itself this way."""
    if job_type not in JOB_TYPES:
        raise ValueError(f"job_type must be one of {JOB_TYPES}, got {job_type!r}")
    for label, value in (("profile", profile), ("task", task), ("variant", variant)):
        if value is not None and (not isinstance(value, str) or not value or "/" in value):
            raise ValueError(f"{label} must be a non-empty string without '/', got {value!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    extra = dict(extra or {})
    for key, value in extra.items():
        if not key or not isinstance(value, str) or not value:
            raise ValueError(f"extra must map names to non-empty strings, got {key!r}: {value!r}")
    fields = {"profile": profile, "task": task, "variant": variant, "seed": seed, **extra}
    tags = [f"{key}:{value}" for key, value in fields.items() if value is not None]
    too_long = [tag for tag in tags if len(tag) > TAG_MAX_CHARS]
    if too_long:
        raise ValueError(f"W&B tags are at most {TAG_MAX_CHARS} characters: {too_long}")
    group = "/".join(part for part in (profile, task) if part) or job_type
    parts = [task, variant, None if seed is None else f"seed{seed}", *extra.values()]
    name = "-".join([job_type, *(part for part in parts if part)])
    return Identity(group=group, job_type=job_type, tags=tags, name=name)


def wandb_mode() -> str:
    """``WANDB_MODE``, offline when unset (jobs must never need a network); ``dryrun`` means offline."""
    mode = os.environ.get("WANDB_MODE", "offline") or "offline"
    mode = {"dryrun": "offline", "run": "online"}.get(mode, mode)
    if mode not in MODES:
        raise ValueError(f"WANDB_MODE must be one of {MODES}, got {mode!r}")
    return mode


def _scalar(value: Any) -> Any:
    """A plain Python number/string/bool (numpy and torch scalars have ``item``), so summaries serialise."""
    return value.item() if hasattr(value, "item") else value


def _artifact_name(name: str) -> str:
    if not _ARTIFACT_NAME.match(name):
        raise ValueError(f"artifact names may hold only letters, digits, '-', '_' and '.', got {name!r}")
    return name


def log_reference_artifact(
    run: Any,
    name: str,
    type: str,
    path: str | Path,
    *,
    aliases: Sequence[str] = (),
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Log ``path`` (a file or folder) as an artifact of ``run`` *by reference*: W&B records its ``file://``
    URI, size and checksum; the bytes stay where the workflow wrote them, so a checkpoint or compiled model is
    never stored twice. Shared by :meth:`JobRun.artifact` and the training logger."""
    import wandb

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no file or folder to log as artifact {name!r}: {path}")
    artifact = wandb.Artifact(_artifact_name(name), type=type, metadata=dict(metadata or {}))
    uri = path.resolve().as_uri()
    artifact.add_reference(uri, name=path.name if path.is_file() else None)
    run.log_artifact(artifact, aliases=["latest", *aliases])


def finish_logger_runs(
    loggers: Iterable[Any],
    *,
    summary: Mapping[str, Any] | None = None,
    artifacts: Iterable[tuple[str, str, str | Path]] = (),
) -> None:
    """Finish the W&B runs among Lightning ``loggers`` (training, fine-tuning), adding first the record's
    headline numbers to the summary and ``(name, type, path)`` artifacts by reference: what Lightning logs per
    step is not the record's (median step time, wall time), and the job's products exist only after the fit."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers:
        if isinstance(logger, WandbLogger):
            run = logger.experiment
            numbers = {key: _scalar(value) for key, value in (summary or {}).items()}
            run.summary.update({key: value for key, value in numbers.items() if isinstance(value, int | float)})
            for name, kind, path in artifacts:
                log_reference_artifact(run, name, kind, path)
            run.finish()


class JobRun:
    """The W&B run of one job, or (``run=None``) a stand-in whose methods do nothing: tracking off."""

    def __init__(self, run: Any | None, identity: Identity) -> None:
        self._run = run
        self.identity = identity

    @property
    def enabled(self) -> bool:
        return self._run is not None

    @property
    def name(self) -> str:
        return self.identity["name"]

    @property
    def run_dir(self) -> Path | None:
        """The run's folder (``.../wandb/offline-run-...``), which ``wandb sync`` takes; None when off."""
        return None if self._run is None else Path(self._run.sync_dir)

    def table(self, key: str, frame: pd.DataFrame) -> None:
        """``frame`` as a ``wandb.Table`` under ``key`` (in the history and the summary, where the dashboard's
        charts query it). Columns may mix types (``two_sided`` holds ``True`` and ``"auto"``)."""
        import pandas as pd

        if not key or not isinstance(key, str):
            raise ValueError(f"a table key must be a non-empty string, got {key!r}")
        if not isinstance(frame, pd.DataFrame):
            raise ValueError(f"table {key!r} must be a pandas DataFrame, got {type(frame).__name__}")
        if self._run is None:
            return
        import wandb

        self._run.log({key: wandb.Table(dataframe=frame.reset_index(drop=True), allow_mixed_types=True)})

    def summary(self, values: Mapping[str, Any]) -> None:
        """Headline numbers in the run summary (what the runs table and bar charts show)."""
        bad = [key for key in values if not isinstance(key, str) or not key]
        if bad:
            raise ValueError(f"summary keys must be non-empty strings, got {bad}")
        if self._run is not None:
            self._run.summary.update({key: _scalar(value) for key, value in values.items()})

    def images(self, paths: Iterable[str | Path], prefix: str = "figures") -> list[str]:
        """Each raster figure among ``paths`` as a ``wandb.Image`` keyed ``<prefix>/<file stem>``; PDFs and other
        files are skipped (a report writes each figure as PNG and PDF). Returns the keys."""
        figures = [Path(path) for path in paths if Path(path).suffix.lower() in IMAGE_SUFFIXES]
        keys = [f"{prefix}/{path.stem}" for path in figures]
        if len(set(keys)) != len(keys):
            raise ValueError(f"two figures share a file stem: {sorted(str(path) for path in figures)}")
        missing = [str(path) for path in figures if not path.is_file()]
        if missing:
            raise FileNotFoundError(f"no such figure: {missing}")
        if self._run is not None and figures:
            import wandb

            self._run.log({key: wandb.Image(str(path)) for key, path in zip(keys, figures, strict=True)})
        return keys

    def artifact(
        self, name: str | None, type: str, path: str | Path, *, aliases: Sequence[str] = (), **metadata: Any
    ) -> None:
        """``path`` as an artifact by reference (:func:`log_reference_artifact`); ``name`` defaults to
        ``<type>-<run name>``."""
        name = name or re.sub(r"[^A-Za-z0-9_.-]", "-", f"{type}-{self.name}")
        _artifact_name(name)
        if self._run is not None:
            log_reference_artifact(self._run, name, type, path, aliases=aliases, metadata=metadata)


@contextmanager
def job_run(
    job_type: str,
    *,
    profile: str | None,
    task: str | None = None,
    variant: str | None = None,
    seed: int | None = None,
    extra: Mapping[str, str] | None = None,
    config: Mapping[str, Any] | None = None,
    project: str = "asap",
    dir: str | Path | None = None,
    enabled: bool = True,
) -> Iterator[JobRun]:
    """One job's W&B run (:func:`job_identity`), offline unless ``WANDB_MODE`` says otherwise, with ``config``,
    the identity's fields and :func:`asap.provenance.provenance` as its config, written under ``dir`` (default:
    ``WANDB_DIR`` or the working directory). The run is finished however the body ends: an exception marks it
    failed (``exit_code=1``) and propagates, so a crashed job still leaves a readable run. With ``enabled=False``
    or ``WANDB_MODE=disabled`` nothing is written and the :class:`JobRun`'s methods do nothing."""
    identity = job_identity(job_type, profile=profile, task=task, variant=variant, seed=seed, extra=extra)
    if not enabled or wandb_mode() == "disabled":
        yield JobRun(None, identity)
        return
    import wandb

    from asap.provenance import provenance

    fields = {"profile": profile, "task": task, "variant": variant, "seed": seed, **(extra or {})}
    run_config = {**{k: v for k, v in fields.items() if v is not None}, **(config or {}), "provenance": provenance()}
    if dir is not None:
        Path(dir).mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=project,
        dir=None if dir is None else str(dir),
        config=run_config,
        mode=wandb_mode(),
        settings=wandb.Settings(console="off", x_disable_stats=True),  # no sampler next to timed benchmarks
        **identity,
    )
    try:
        yield JobRun(run, identity)
    except BaseException:
        run.finish(exit_code=1)
        raise
    run.finish()


# The jobs' logging: the CLI calls these, the dashboard reads their keys (asap.dashboard.PANEL_KEYS).


def _require(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    missing = sorted(set(columns) - set(frame.columns))
    if missing:
        raise ValueError(f"{what} lacks columns {missing}")


def _row_summary(row: Mapping[str, Any], prefix: str, columns: Mapping[str, str]) -> dict[str, Any]:
    """``{prefix/name: row[column]}`` for the columns the row has and whose value is not NaN."""
    values = {}
    for name, column in columns.items():
        value = _scalar(row.get(column))
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            values[f"{prefix}/{name}"] = value
    return values


def log_data(run: JobRun, sizes: Mapping[str, int]) -> None:
    """The data job: examples per split (``data/<split>_size``)."""
    run.summary({f"data/{split}_size": int(size) for split, size in sizes.items()})


def log_compile(
    run: JobRun,
    report: pd.DataFrame,
    *,
    operating_point: Mapping[str, Any] | None = None,
    candidates: pd.DataFrame | None = None,
) -> None:
    """The compile job: the calibration report (one row per layer and head: ``r2``, ``plan_error``, ...) as
    ``compile/calibration``, its per-layer means (``layer_index`` in depth order, ``series`` the run) as
    ``compile/layers`` (what the R² and plan-error charts draw), the operating-point candidates as
    ``compile/candidates``, and headline means in the summary."""
    _require(report, ("layer", "head", "r2", "plan_error"), "a calibration report")
    order = {layer: index for index, layer in enumerate(dict.fromkeys(report["layer"]))}
    calibration = report.assign(layer_index=report["layer"].map(order))
    scores = [column for column in ("r2", "plan_error", "kl") if column in report]
    layers = calibration.groupby(["layer_index", "layer"], as_index=False)[scores].mean().assign(series=run.name)
    run.table("compile/calibration", calibration)
    run.table("compile/layers", layers)
    summary = {f"compile/{score}_mean": float(report[score].mean()) for score in scores}
    summary.update({"compile/r2_min": float(report["r2"].min()), "compile/num_layers": len(order)})
    if operating_point:
        summary.update({f"compile/{key}": value for key, value in operating_point.items() if key in ("slices",)})
    run.summary(summary)
    if candidates is not None:
        run.table("compile/candidates", candidates)


def log_frontier(run: JobRun, table: pd.DataFrame) -> None:
    """The frontier job: the whole table as ``frontier`` (accuracy against latency at the model's n,
    ``latency_ms_nmodel``, per variant), and in the summary the teacher's and ASAP's operating point's accuracy,
    their difference, ASAP's agreement with the teacher and its speed-up."""
    _require(table, ("variant", "family", "accuracy", "latency_ms_nmodel", "operating_point"), "a frontier table")
    run.table("frontier", table)
    teacher = table[table["variant"] == "teacher"]
    point = table[table["operating_point"].astype(str) == "True"]
    summary = {}
    if len(teacher):
        summary.update(_row_summary(teacher.iloc[0], "frontier", {"teacher_accuracy": "accuracy"}))
    if len(point):
        columns = {
            "asap_accuracy": "accuracy",
            "accuracy_diff": "accuracy_diff",
            "agreement": "agreement",
            "speedup_vs_teacher": "speedup_vs_teacher_nmodel",
            "slices": "slices",
        }
        summary.update(_row_summary(point.iloc[0], "frontier", columns))
    run.summary(summary)


def log_downstream(run: JobRun, table: pd.DataFrame) -> None:
    """The downstream job: the table as ``downstream`` (``series`` the run, so curves of several runs part),
    and the calibration curve's last point (most calibration samples) in the summary."""
    _require(table, ("experiment", "calib_samples", "recovered", "asap_accuracy", "teacher_accuracy"), "downstream")
    run.table("downstream", table.assign(series=run.name))
    curve = table[table["experiment"] == "calibration"].sort_values("calib_samples")
    if len(curve):
        columns = {
            "recovered": "recovered",
            "asap_accuracy": "asap_accuracy",
            "teacher_accuracy": "teacher_accuracy",
            "r2_mean": "r2_mean",
            "calib_samples": "calib_samples",
        }
        run.summary(_row_summary(curve.iloc[-1], "downstream", columns))


def log_speed(run: JobRun, table: pd.DataFrame, mode: str) -> None:
    """The speed job of one ``mode`` (``inference``/``training``): the table as ``speed/<mode>`` with a
    ``series`` column (the method, and the shape where it is not the reference one) for latency and peak
    memory against ``seq_len``; in the summary, at the longest reference ``n`` the teacher (``sinkhorn``) ran,
    each method's latency and speed-up (``speed/<mode>/latency_ms/<method>``, ...)."""
    if mode not in ("inference", "training"):
        raise ValueError(f"mode must be 'inference' or 'training', got {mode!r}")
    _require(table, ("shape", "method", "seq_len", "latency_ms", "peak_mem_mb"), "a speed table")
    series = table["method"].where(table["shape"] == "reference", table["method"] + " [" + table["shape"] + "]")
    run.table(f"speed/{mode}", table.assign(series=series))
    reference = table[table["shape"] == "reference"]
    teacher = reference[reference["method"] == "sinkhorn"]
    if not len(reference):
        return
    n = int((teacher if len(teacher) else reference)["seq_len"].max())
    summary: dict[str, Any] = {f"speed/{mode}/seq_len": n}
    for row in reference[reference["seq_len"] == n].to_dict("records"):
        columns = {f"{name}/{row['method']}": name for name in ("latency_ms", "peak_mem_mb", "speedup_vs_teacher")}
        summary.update(_row_summary(row, f"speed/{mode}", columns))
    run.summary(summary)


def report_runs_table(results: str | Path) -> pd.DataFrame:
    """One row per (task, variant) of the training records: seeds, mean (and std) test accuracy, and the
    training cost (median step time, peak step memory, wall time; means over seeds), ``label`` for charts."""
    from asap.report import collect

    runs = collect.train_runs(results)
    grouped = runs.groupby(["task", "variant"], as_index=False, sort=True)
    table = grouped.agg(
        seeds=("seed", "count"),
        test_acc=("test_acc", "mean"),
        test_acc_std=("test_acc", "std"),
        step_time_ms_median=("step_time_ms_median", "mean"),
        step_peak_mem_mb=("step_peak_mem_mb", "mean"),
        train_wall_s=("train_wall_s", "mean"),
    )
    table["test_acc_std"] = table["test_acc_std"].fillna(0.0)  # one seed: no spread
    table.insert(0, "label", table["task"] + "/" + table["variant"])
    return table


def log_report(run: JobRun, results: str | Path, written: Iterable[str | Path]) -> None:
    """The report job: every figure it wrote as an image (``figures/<stem>``), the training records per
    (task, variant) as ``report/runs`` (:func:`report_runs_table`: accuracy and training cost), and counts."""
    written = [Path(path) for path in written]
    runs = report_runs_table(results)
    run.table("report/runs", runs)
    keys = run.images(written)
    run.summary({"report/train_runs": int(runs["seeds"].sum()), "report/figures": len(keys)})


# Reading offline runs back (tests; the dashboard's key check).


@dataclass(frozen=True)
class OfflineArtifact:
    name: str
    type: str
    aliases: tuple[str, ...]
    references: tuple[str, ...]  # URIs of entries logged by reference
    files: tuple[str, ...]  # paths of entries whose bytes the artifact holds


@dataclass
class OfflineRun:
    """What an offline run recorded, as ``wandb sync`` would send it."""

    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history_keys: set[str] = field(default_factory=set)
    tables: dict[str, list[str]] = field(default_factory=dict)  # key -> columns
    images: set[str] = field(default_factory=set)
    artifacts: list[OfflineArtifact] = field(default_factory=list)
    tags: tuple[str, ...] = ()
    group: str = ""
    job_type: str = ""
    name: str = ""
    exit_code: int | None = None  # None: the run never finished

    @property
    def keys(self) -> set[str]:
        """Every key a panel can read: summary and history keys (tables and images among them)."""
        return set(self.summary) | self.history_keys


_HEADER = b":W&B" + struct.pack("<H", 0xBEE1) + b"\x00"  # ident, magic, version
_BLOCK = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _transaction_log(path: Path) -> Iterator[bytes]:
    """The serialised ``Record`` protos of a ``.wandb`` transaction log.

    wandb (0.31) writes this file from its Go core and ships no Python reader for it (the old
    ``wandb.sdk.internal.datastore`` is gone), so this is the format, read directly: a 7-byte header
    (``:W&B``, magic ``0xBEE1``, version 0), then LevelDB-log blocks of 32 KiB; each chunk has a 7-byte header
    (CRC-32 of type byte + data, little-endian uint16 length, type FULL/FIRST/MIDDLE/LAST), and a block's
    last < 7 bytes are padding. A truncated last chunk (a run still writing, or killed) ends the log; a bad
    checksum is an error. Only this function knows the file format.
    """
    data = path.read_bytes()
    if not data.startswith(_HEADER):
        raise ValueError(f"{path} is not a W&B transaction log (header {data[:7]!r})")
    position, pending = len(_HEADER), b""
    while position + 7 <= len(data):
        left = _BLOCK - position % _BLOCK
        if left < 7:
            position += left
            continue
        checksum, length, kind = struct.unpack_from("<IHB", data, position)
        if kind == 0 and length == 0:  # zero padding: nothing more was written
            break
        chunk = data[position + 7 : position + 7 + length]
        if len(chunk) < length:
            break
        if zlib.crc32(bytes([kind]) + chunk) != checksum:
            raise ValueError(f"{path}: corrupt record at byte {position}")
        position += 7 + length
        if kind in (_FULL, _FIRST):
            pending = chunk
        elif kind in (_MIDDLE, _LAST):
            pending += chunk
        else:
            raise ValueError(f"{path}: unknown chunk type {kind} at byte {position}")
        if kind in (_FULL, _LAST):
            yield pending
            pending = b""


def _set_nested(target: dict[str, Any], keys: Sequence[str], value: Any) -> None:
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = value


def _item_keys(item: Any) -> list[str]:
    return list(item.nested_key) or [item.key]


def read_offline_run(run_dir: str | Path) -> OfflineRun:
    """Parse the offline run in ``run_dir`` (a ``.../wandb/offline-run-<time>-<id>`` folder): config,
    summary (final values, nested keys as dicts), history keys, tables (their columns, from the table files
    the run saved), images, artifacts, tags, group, job type, name and exit code."""
    from wandb.proto import wandb_internal_pb2 as pb

    run_dir = Path(run_dir)
    logs = sorted(run_dir.glob("run-*.wandb"))
    if len(logs) != 1:
        raise ValueError(f"{run_dir} is not an offline W&B run folder (found {len(logs)} run-*.wandb files)")
    run = OfflineRun(path=run_dir)
    history_values: dict[str, Any] = {}
    for raw in _transaction_log(logs[0]):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            info = record.run
            run.group, run.job_type, run.name, run.tags = (
                info.run_group,
                info.job_type,
                info.display_name,
                tuple(info.tags),
            )
            for item in info.config.update:
                _set_nested(run.config, _item_keys(item), json.loads(item.value_json))
        elif kind == "config":
            for item in record.config.update:
                _set_nested(run.config, _item_keys(item), json.loads(item.value_json))
        elif kind == "summary":
            for item in record.summary.update:
                _set_nested(run.summary, _item_keys(item), json.loads(item.value_json))
            for item in record.summary.remove:
                run.summary.pop(_item_keys(item)[0], None)
        elif kind == "history":
            for item in record.history.item:
                keys = _item_keys(item)
                run.history_keys.add(keys[0])
                _set_nested(history_values, keys, json.loads(item.value_json))
        elif kind == "artifact":
            entries = record.artifact.manifest.contents
            run.artifacts.append(
                OfflineArtifact(
                    name=record.artifact.name,
                    type=record.artifact.type,
                    aliases=tuple(record.artifact.aliases),
                    references=tuple(entry.ref for entry in entries if entry.ref),
                    files=tuple(entry.path for entry in entries if not entry.ref),
                )
            )
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    run.config.pop("_wandb", None)
    run.history_keys = {key for key in run.history_keys if not key.startswith("_")}
    for key, value in {**history_values, **run.summary}.items():
        media = value.get("_type") if isinstance(value, dict) else None
        if media == "table-file":
            table_file = run_dir / "files" / value.get("path", "")
            columns = json.loads(table_file.read_text()).get("columns", []) if table_file.is_file() else []
            run.tables[key] = [str(column) for column in columns]
        elif media == "image-file":
            run.images.add(key)
    return run


def run_id(run_dir: str | Path) -> str:
    """The W&B run id of an offline run folder (``offline-run-<time>-<id>``)."""
    return Path(run_dir).name.rsplit("-", 1)[-1]


def merge_segments(segments: list[OfflineRun]) -> OfflineRun:
    """One run from the offline segments of a resumed job (oldest first, one id: W&B cannot resume an offline
    run, so each segment is its own folder until ``wandb sync`` sends them, in order, to the one run): the
    config and summary updated segment by segment, history keys, tables, images and artifacts gathered, the
    identity and exit code of the last segment."""
    if not segments:
        raise ValueError("no segments to merge")
    ids = {run_id(segment.path) for segment in segments}
    if len(ids) != 1:
        raise ValueError(f"segments of different runs: {sorted(ids)}")
    merged = OfflineRun(path=segments[-1].path)
    for segment in segments:
        merged.config.update(segment.config)
        merged.summary.update(segment.summary)
        merged.history_keys |= segment.history_keys
        merged.tables.update(segment.tables)
        merged.images |= segment.images
        merged.artifacts += segment.artifacts
    last = segments[-1]
    merged.tags, merged.group, merged.job_type, merged.name = last.tags, last.group, last.job_type, last.name
    merged.exit_code = last.exit_code
    return merged


def read_offline_runs(root: str | Path) -> list[OfflineRun]:
    """Every offline run under ``root``, the segments of a resumed job (same id) merged into one run
    (:func:`merge_segments`), in the order of each run's first segment."""
    by_id: dict[str, list[OfflineRun]] = {}
    for path in offline_runs(root):
        by_id.setdefault(run_id(path), []).append(read_offline_run(path))
    return [merge_segments(segments) for segments in by_id.values()]


def offline_runs(root: str | Path) -> list[Path]:
    """Every offline run folder under ``root`` (``**/wandb/offline-run-*``), oldest first."""
    return sorted((path for path in Path(root).rglob("offline-run-*") if path.is_dir()), key=lambda path: path.name)
