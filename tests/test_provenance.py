"""Provenance: the dirty flag describes the code, not the results the workflow rewrites."""

import subprocess

import pytest

from asap import provenance


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "test@example.org")
    git("config", "user.name", "test")
    (tmp_path / "asap").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "asap/code.py").write_text("x = 1\n")
    (tmp_path / "results/table.csv").write_text("a\n1\n")
    (tmp_path / "uv.lock").write_text("lock\n")
    git("add", "-A")
    git("commit", "-qm", "init")
    monkeypatch.setattr(provenance, "ROOT", tmp_path)
    return tmp_path


def test_dirty_flag_follows_the_code_only(checkout):
    clean = provenance.git_commit()
    assert len(clean) == 40 and not clean.endswith("-dirty")
    (checkout / "results/table.csv").write_text("a\n2\n")  # the workflow rewrote a committed result
    assert provenance.git_commit() == clean
    (checkout / "asap/code.py").write_text("x = 2\n")
    assert provenance.git_commit() == clean + "-dirty"


def test_record_names_the_lockfile_and_threads(checkout):
    record = provenance.provenance()
    assert record["uv_lock_sha256"] == provenance.hashlib.sha256(b"lock\n").hexdigest()
    assert record["threads"] >= 1 and record["device"]
