"""The Snakemake workflow: dry runs of every profile, the miniature DAG end to end, and the report."""

import base64
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest

from asap.dashboard import PANEL_KEYS, missing_keys
from asap.report import build_report
from asap.report.headline import main as recompute_headline
from asap.results import FrontierPredictions, predictions_path
from asap.tracking import JOB_TYPES, offline_runs, read_offline_run

ROOT = Path(__file__).resolve().parents[1]


def snakemake(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(cwd),
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd)


def job_counts(output: str) -> dict[str, int]:
    counts = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


@pytest.mark.parametrize(
    "profile, trains, teachers, finetunes",
    [("default", 13, 4, 3), ("paper", 144, 72, 36), ("mini", 4, 1, 1), ("gpu", 42, 18, 12)],
)
def test_dry_run(profile, trains, teachers, finetunes, tmp_path):
    configfile = str(ROOT / f"experiments/{profile}.yaml")  # retrain: the DAG that trains (make reproduce-all)
    result = snakemake("-n", "--cores", "2", "--configfile", configfile, "--config", "retrain=True", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    counts = job_counts(result.stdout)
    assert counts["train"] == trains and counts["report"] == 1
    # every Sinkhorn teacher (T = 3 and T = 10); a run with online maps is its teacher's twin, not a teacher
    assert counts["compile"] == counts["frontier"] == teachers
    assert counts.get("finetune", 0) == finetunes


def test_committed_weights_replace_training_and_reproduce_all_writes_them(tmp_path):
    """With ``weights: DIR`` a run trains nothing and reads the teachers' committed weights (and their records);
    ``retrain=True`` trains every run and writes the weights of the teachers and their online twins."""
    mini = ["--cores", "2", "--configfile", str(ROOT / "experiments/mini.yaml")]
    weights = tmp_path / "weights"
    result = snakemake("-n", *mini, "--config", f"weights={weights}", "retrain=True", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    counts = job_counts(result.stdout)
    assert counts["train"] == 4 and counts["weights"] == 2 and counts["compile"] == 1  # sinkhorn and its twin
    result = snakemake("-n", *mini, "--config", f"weights={weights}", cwd=tmp_path)
    assert result.returncode != 0 and "MissingInputException" in result.stderr + result.stdout
    assert f"{weights}/listops/sinkhorn/seed0.ckpt" in result.stderr + result.stdout
    for variant in ("sinkhorn", "sinkhorn_online"):
        for suffix in (".ckpt", ".json"):
            (weights / "listops" / variant / f"seed0{suffix}").parent.mkdir(parents=True, exist_ok=True)
            (weights / "listops" / variant / f"seed0{suffix}").write_text("{}")
    for variant in ("softmax", "sinkhorn", "sliced", "sinkhorn_online"):
        record = tmp_path / "results/mini/train/listops" / variant / "seed0.json"
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text("{}")
    result = snakemake("-n", *mini, "--config", f"weights={weights}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    counts = job_counts(result.stdout)
    assert "train" not in counts and "weights" not in counts and counts["compile"] == counts["frontier"] == 1


def test_slurm_profile_dry_run(tmp_path):
    result = snakemake(
        "-n",
        "--profile",
        str(ROOT / "workflow/profiles/slurm"),
        "--configfile",
        str(ROOT / "experiments/paper.yaml"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert job_counts(result.stdout)["train"] == 144


@pytest.fixture(scope="module")
def mini_run(tmp_path_factory):
    """The miniature profile's whole DAG, run once in a scratch directory."""
    work = tmp_path_factory.mktemp("workflow")
    shutil.copytree(ROOT / "experiments", work / "experiments")
    with pytest.MonkeyPatch.context() as patch:  # the jobs' W&B runs (offline), read back below
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("WANDB_DIR", str(work / "runs/mini"))
        result = snakemake("--cores", "2", "--configfile", str(work / "experiments/mini.yaml"), cwd=work)
    assert result.returncode == 0, result.stderr[-4000:]
    return work


@pytest.mark.slow
def test_every_job_writes_the_w_and_b_run_the_dashboard_reads(mini_run):
    """Each workflow job's offline W&B run, read back from disk: named by its job, grouped by profile/task, with
    the tables and summary keys every dashboard panel reads (asap.dashboard.PANEL_KEYS)."""
    runs = [read_offline_run(path) for path in offline_runs(mini_run / "runs/mini")]
    assert {run.job_type for run in runs} == set(JOB_TYPES)
    assert all(run.group in ("mini", "mini/listops") and "profile:mini" in run.tags for run in runs), "grouped"
    frontier = next(run for run in runs if run.job_type == "frontier")
    assert {"task:listops", "variant:sinkhorn", "seed:0"} <= set(frontier.tags)
    assert {"variant", "accuracy", "latency_ms_nmodel"} <= set(frontier.tables["frontier"])
    assert {"frontier/asap_accuracy", "frontier/teacher_accuracy"} <= set(frontier.summary)
    assert frontier.config["provenance"]["git_commit"], "provenance in the run's config"
    compiled = next(run for run in runs if run.job_type == "compile")
    (model,) = [artifact for artifact in compiled.artifacts if artifact.type == "compiled-model"]  # + run tables
    assert model.references and all(uri.startswith("file://") for uri in model.references) and not model.files
    assert missing_keys(runs, PANEL_KEYS) == {job: [] for job in sorted(PANEL_KEYS)}


@pytest.mark.slow
def test_mini_workflow_produces_every_output(mini_run):
    results, figures = mini_run / "results/mini", mini_run / "paper_figures/mini"
    for variant in ("softmax", "sinkhorn", "sliced"):
        record = json.loads((results / f"train/listops/{variant}/seed0.json").read_text())
        assert record["variant"] == variant and record["provenance"]["git_commit"]
    frontier = pd.read_csv(results / "bench/frontier/listops/sinkhorn/seed0.csv")
    assert {"teacher", "sinkhorn_0it", "sinkhorn_1it", "asap", "asap_no_map", "asap_online"} <= set(frontier.variant)
    online = json.loads((results / "train/listops/sinkhorn_online/seed0.json").read_text())
    assert (
        online["metrics"]["test_acc"]
        == json.loads((results / "train/listops/sinkhorn/seed0.json").read_text())["metrics"]["test_acc"]
    ), "the online maps leave the teacher's training unchanged"
    assert online["online_asap"]["accuracy"] == pytest.approx(frontier.set_index("variant").accuracy["asap_online"])
    finetuned = json.loads((results / "finetune/listops/sinkhorn/seed0.json").read_text())
    assert finetuned["finetune"]["steps"] == 4 and 0 <= finetuned["metrics"]["test_acc"] <= 1
    point = json.loads((results / "compile/listops/sinkhorn/seed0.operating_point.json").read_text())
    chosen = frontier[frontier.operating_point]
    assert len(chosen) == 1 and chosen.slices.item() == point["operating_point"]["slices"]
    assert chosen.directions.item() == point["operating_point"]["directions"]
    # L in {d/4 .. 4d} x {random, pca} with ridge maps, then the chosen point fitted to the plans
    assert len(point["candidates"]) == 2 * 5 + 1 and point["head_dim"] == 8
    assert point["operating_point"]["fit"] == "kl"
    speed = pd.read_csv(results / "bench/speed/inference.csv")
    model_shape = speed[speed["shape"] == "listops/sinkhorn"]
    assert set(model_shape.slices) == {point["operating_point"]["slices"]} and set(model_shape.head_dim) == {8}
    downstream = pd.read_csv(results / "bench/downstream/listops/sinkhorn/seed0.csv")
    assert {"calibration", "length"} <= set(downstream.experiment)
    assert len(pd.read_csv(results / "compile/listops/sinkhorn/seed0.csv")) == 2  # one layer, two heads
    tables = ("accuracy", "training_cost", "frozen_layer", "headline", "speed", "compile_options", "calibration")
    for name in (*tables, "compile_options_layers"):
        assert (figures / f"{name}.md").read_text().count("|") > 10
        assert "\\begin{table}" in (figures / f"{name}.tex").read_text()
    assert recompute_headline([str(results), "--check", str(figures / "headline.md")]) == 0
    assert FrontierPredictions.load(predictions_path(results / "bench/frontier/listops/sinkhorn/seed0.csv"))
    for name in ("frontier", "accuracy_sweeps", "dual_map_r2", "training_cost", "calibration_curve", "speed"):
        assert matplotlib.image.imread(figures / f"{name}.png").shape[0] > 100
        assert (figures / f"{name}.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.slow
def test_rerun_does_nothing(mini_run):
    result = snakemake("-n", "--cores", "2", "--configfile", str(mini_run / "experiments/mini.yaml"), cwd=mini_run)
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


@pytest.mark.slow
def test_report_from_a_results_directory(mini_run, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(mini_run / "results/mini", results)
    written = build_report(results, tmp_path / "figures")
    assert len(written) == 40 and all(path.exists() for path in written)  # 6 figures x 2, 9 tables x 3, provenance
    cost = (tmp_path / "figures/workflow_cost.md").read_text()
    assert all(rule in cost for rule in ("train", "compile", "frontier", "downstream", "finetune", "speed", "all"))
    shutil.rmtree(results / "jobs")  # job records are optional: results from elsewhere may lack them
    assert len(build_report(results, tmp_path / "figures")) == 37
    provenance = json.loads((tmp_path / "figures/provenance.json").read_text())
    assert "train/listops/sinkhorn/seed0.json" in provenance["sources"]
    shutil.rmtree(results / "bench/frontier")
    with pytest.raises(FileNotFoundError, match="frontier"):
        build_report(results, tmp_path / "figures")


def test_every_committed_result_is_a_declared_workflow_output(tmp_path):
    """No stale files: each tracked file under results/ is an output of the profile that wrote it, the
    ``.provenance.json`` beside a declared table, or the ``benchmark:`` record of a declared job."""
    tracked = subprocess.run(["git", "ls-files", "results"], cwd=ROOT, capture_output=True, text=True, check=True)
    files = [Path(line) for line in tracked.stdout.splitlines()]
    profiles = {path.parts[1] for path in files}
    declared: dict[str, str] = {}  # output path -> rule
    for profile in profiles:
        configfile = ROOT / f"experiments/{profile}.yaml"
        assert configfile.exists(), f"results/{profile} belongs to no workflow profile"
        targets = ("all", "screen")  # the screen of candidate tasks is a target of its own, outside all
        summary = snakemake(  # retrain: a profile with committed weights declares its training records so
            *targets, "-n", "--summary", "--cores", "2", "--configfile", str(configfile), "--config", "retrain=True",
            cwd=tmp_path,
        )
        assert summary.returncode == 0, summary.stderr[-2000:]
        for line in summary.stdout.splitlines()[1:]:
            fields = line.split("\t")
            if len(fields) >= 3:  # the table: output_file, date, rule, ...
                declared[fields[0]] = fields[2]
    stale = []
    for path in files:
        name = str(path)
        if name in declared:
            continue
        if name.endswith(".provenance.json") and name.removesuffix(".provenance.json") + ".csv" in declared:
            continue
        if path.parts[2] == "jobs" and path.suffix == ".tsv":
            rule, *rest = path.parts[3:]
            job = str(Path(*rest).with_suffix("")) if rest else None
            rule = Path(rule).stem if job is None else rule
            if any(
                r == rule and (job is None or Path(o).with_suffix("").as_posix().endswith(job))
                for o, r in declared.items()
            ):
                continue
        stale.append(name)
    assert not stale, f"files under results/ that no rule declares: {stale[:10]}"


def _text(markup: str) -> str:
    """The words of an rst paragraph or of rendered HTML, without markup, on one line."""
    words = html.unescape(re.sub(r"<[^>]+>", "", markup)).replace("``", "").replace("**", "")
    return " ".join(words.split())


@pytest.mark.slow
def test_html_report_carries_every_figure_and_table_with_its_caption(mini_run, tmp_path):
    """``snakemake --report``: every PNG figure and HTML table the report rule wrote, and provenance.json, are in
    the self-contained report (the file itself, not a link) with the caption under workflow/report/ beside it;
    the workflow description and every rule's run time are there too."""
    report = tmp_path / "report.html"
    stylesheet = ROOT / "workflow/report/report.css"
    configfile = str(mini_run / "experiments/mini.yaml")
    # --cores: the Snakefile reads workflow.cores for the jobs' threads, even to build a report
    result = snakemake(
        "--cores", "1", "--configfile", configfile, "--report", str(report), "--report-stylesheet", str(stylesheet),
        cwd=mini_run,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    page = report.read_text()

    def variable(script: str):
        """One of the report's data: ``<script id="<script>">var <name> = <JSON>;</script>``."""
        return json.loads(re.search(rf'<script id="{script}">\s*var \w+ = (.*?);\s*</script>', page, re.DOTALL)[1])

    results = variable("results")
    figures = mini_run / "paper_figures/mini"
    captions = {".png": "figures", ".html": "tables"}
    written = sorted(p for p in figures.iterdir() if p.suffix in captions or p.name == "provenance.json")
    assert len(written) == 6 + 9 + 1
    assert set(results) == {str(path.relative_to(mini_run)) for path in written}
    for path in written:
        entry = results[str(path.relative_to(mini_run))]
        data = entry["data_uri"].partition(";base64,")[2]
        assert base64.b64decode(data) == path.read_bytes(), f"{path.name}: the report carries another file"
        caption = f"{captions[path.suffix]}/{path.stem}.rst" if path.suffix in captions else "provenance.rst"
        first_paragraph = (ROOT / "workflow/report" / caption).read_text().split("\n\n")[0]
        assert _text(first_paragraph) in _text(entry["caption"]), f"{path.name}: not its caption ({caption})"
    assert {entry["labels"]["figure"].split(":")[0] for entry in results.values() if "figure" in entry["labels"]} == {
        path.stem for path in written if path.suffix == ".png"
    }
    provenance = json.loads((figures / "provenance.json").read_text())
    labels = results["paper_figures/mini/provenance.json"]["labels"]
    assert provenance["report"]["git_commit"].startswith(labels["report commit"].removesuffix("-dirty"))
    assert labels["sources"] == f"{len(provenance['sources'])} files under results/mini"
    assert "trained then compiled" in variable("workflow-desc") and "results/mini/" in variable("workflow-desc")
    timed = {job["rule"] for job in variable("runtimes")["data"]["values"]}
    assert timed >= {"data", "train", "compile", "frontier", "downstream", "finetune", "speed", "report"}
