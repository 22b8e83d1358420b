"""Hostile and broken compiled files given to ``asap finetune --compiled``: one line that names the file and the
problem, exit status 2, nothing written, no data touched, and no code from a pickle ever run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from asap.__main__ import main
from asap.compiler.io import FORMAT, save_compiled
from asap.models import create_model

MODEL = {
    "name": "vit",
    "image_size": 28,
    "in_chans": 1,
    "num_classes": 10,
    "attention": "softmax",
    "attention_options": {},
    "patch_size": 7,
    "embed_dim": 16,
    "depth": 1,
    "num_heads": 2,
}
RUN = {"task": "mnist", "variant": "sinkhorn", "seed": 0, "optim": {"lr": 1e-3}}


class _Touches:
    """A pickle that would create a file when loaded: ``weights_only`` loading must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """Each broken file once for all cases, with the message that must name its problem."""
    tmp_path = tmp_path_factory.mktemp("hostile")
    good = save_compiled(create_model(**MODEL), tmp_path / "good.pt", MODEL, {"run": RUN})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    code = tmp_path / "code.pt"
    torch.save({"format": FORMAT, "model_args": MODEL, "state_dict": _Touches(tmp_path / "ran"), "metadata": {}}, code)
    other = tmp_path / "other.pt"
    save_compiled(create_model(**{**MODEL, "depth": 2}), other, MODEL, {"run": RUN})
    incomplete = tmp_path / "incomplete.pt"
    torch.save({"format": FORMAT}, incomplete)
    no_run = save_compiled(create_model(**MODEL), tmp_path / "no_run.pt", MODEL, {})
    bad_run = save_compiled(create_model(**MODEL), tmp_path / "bad_run.pt", MODEL, {"run": {"task": "mnist"}})
    return {
        "truncated": (truncated, "does not load"),
        "code-carrying": (code, "does not load"),
        "another model": (other, "does not match this model"),
        "incomplete": (incomplete, "incomplete asap compiled model"),
        "no run": (no_run, "records no training run"),
        "bad run": (bad_run, "run record lacks"),
        "missing": (tmp_path / "absent.pt", "no compiled model at"),
    }


@pytest.mark.parametrize(
    "case", ["truncated", "code-carrying", "another model", "incomplete", "no run", "bad run", "missing"]
)
def test_finetune_refuses_a_broken_compiled_file_in_one_line(case, hostile_files, tmp_path, capsys):
    path, problem = hostile_files[case]
    out, result = tmp_path / "out.pt", tmp_path / "result.json"
    data_dir = tmp_path / "data"
    argv = ["finetune", "--compiled", str(path), "--out", str(out), "--result", str(result)]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--run-dir", str(tmp_path / "run"), "--data-dir", str(data_dir), "--no-wandb"])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and problem in lines[0], lines
    assert not out.exists() and not result.exists() and not data_dir.exists(), "nothing written, no data touched"
    assert not (path.parent / "ran").exists(), "a pickle's code ran"
