"""Experiment configs: one YAML per (profile, task) under a config directory, plus command-line overrides.

A task config holds ``data``, ``model``, ``optim``, ``trainer`` and ``variants`` (the attention options of
each variant). :func:`run_config` resolves it for one (variant, seed) into the flat record a run logs.

The config directory is ``experiments/`` of the repository. It ships inside the wheel too (``asap/experiments``,
see ``pyproject.toml``), so an installed ``asap`` finds its configs from any working directory; an explicit
``config_dir`` (``asap train --config-dir``) takes precedence over both.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

_PACKAGED = Path(__file__).resolve().parents[1] / "experiments"  # inside an installed wheel
_CHECKOUT = Path(__file__).resolve().parents[2] / "experiments"  # a source checkout (editable install)
DEFAULT_PROFILE = "cpu"


def config_dir(explicit: str | Path | None = None) -> Path:
    """The directory of profile folders (``<dir>/<profile>/<task>.yaml``): ``explicit`` if given, else the
    configs shipped in the package, else the checkout's ``experiments/``."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_dir():
            raise FileNotFoundError(f"config directory {path} does not exist")
        return path
    return _PACKAGED if _PACKAGED.is_dir() else _CHECKOUT


def profiles(directory: str | Path | None = None) -> list[str]:
    """The profiles of a config directory: its folders holding task configs."""
    return sorted(p.name for p in config_dir(directory).iterdir() if p.is_dir() and any(p.glob("*.yaml")))


def profile_tasks(profile: str, directory: str | Path | None = None) -> dict[str, list[str]]:
    """``{task: [variants]}`` configured in one profile."""
    folder = config_dir(directory) / profile
    configs = {path.stem: yaml.safe_load(path.read_text()) for path in sorted(folder.glob("*.yaml"))}
    return {task: sorted(config.get("variants", {})) for task, config in configs.items()}


def config_path(task: str, profile: str = DEFAULT_PROFILE, directory: str | Path | None = None) -> Path:
    return config_dir(directory) / profile / f"{task}.yaml"


def load_task_config(
    task: str, profile: str = DEFAULT_PROFILE, path: str | Path | None = None, directory: str | Path | None = None
) -> dict[str, Any]:
    """The task config ``path``, or ``<config dir>/<profile>/<task>.yaml`` (see :func:`config_dir`)."""
    path = Path(path) if path else config_path(task, profile, directory)
    if not path.exists():
        available = sorted(p.stem for p in path.parent.glob("*.yaml")) if path.parent.exists() else []
        raise FileNotFoundError(f"no config {path}; configs in {path.parent}: {available}")
    config = yaml.safe_load(path.read_text())
    if config.get("task") != task:
        raise ValueError(f"{path} is the config of task {config.get('task')!r}, not {task!r}")
    return config


def apply_overrides(config: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``["trainer.max_epochs=1", "optim.lr=3e-4"]`` -> a copy of ``config`` with those values (YAML-parsed)."""
    config = copy.deepcopy(config)
    for override in overrides:
        key, sep, raw = override.partition("=")
        if not sep:
            raise ValueError(f"override {override!r} is not of the form key.path=value")
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {override!r}: {part!r} is not a section")
        node[leaf] = parse_value(raw)
    return config


def parse_value(raw: str) -> Any:
    """YAML scalar parsing, plus numbers YAML 1.1 leaves as strings (``3e-3``)."""
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


VARIANT_KEYS = {"normaliser", "attention", "set"}


def variant_entry(task_config: dict[str, Any], variant: str) -> tuple[str, dict[str, Any], list[str]]:
    """``(normaliser, attention options, overrides)`` of one variant of a task config.

    A ``variants`` entry is either the variant's attention options (the variant's name is then the normaliser's),
    or ``{normaliser: ..., attention: {...}, set: [...]}``: the normaliser by name (e.g. variant ``sinkhorn_t10``
    with ``normaliser: sinkhorn`` and ``attention: {n_iters: 10}``), and dotted overrides that apply to this
    variant only.
    """
    variants = task_config.get("variants", {})
    if variant not in variants:
        raise ValueError(f"variant {variant!r} is not configured for task {task_config['task']!r}: {sorted(variants)}")
    entry = variants[variant] or {}
    if not VARIANT_KEYS & set(entry):
        return variant, dict(entry), []
    unknown = set(entry) - VARIANT_KEYS
    if unknown:
        raise ValueError(f"variant {variant!r} has unknown keys {sorted(unknown)}; valid: {sorted(VARIANT_KEYS)}")
    return entry.get("normaliser", variant), dict(entry.get("attention") or {}), list(entry.get("set", []))


def run_config(task_config: dict[str, Any], variant: str, seed: int, profile: str | None = None) -> dict[str, Any]:
    """The resolved config of one training run (see :func:`variant_entry`); the resolved values are what the
    run records. ``profile`` names the config set it came from (W&B groups runs by it)."""
    normaliser, options, overrides = variant_entry(task_config, variant)
    config = {key: copy.deepcopy(value) for key, value in task_config.items() if key != "variants"}
    config = apply_overrides(config, overrides)
    config.update(variant=variant, normaliser=normaliser, seed=seed, attention_options=copy.deepcopy(options))
    if profile is not None:
        config["profile"] = profile
    return config


SECTIONS = {"task", "data", "model", "optim", "trainer", "logging", "variants", "reference"}
RUN_KEYS = {"variant", "normaliser", "seed", "attention_options", "profile"}  # added by run_config
OPTIM_KEYS = {"lr", "weight_decay", "warmup_fraction", "betas", "label_smoothing"}  # what Classifier reads
LOGGING_KEYS = {"wandb", "project"}
REFERENCE_KEYS = {"accuracy", "model", "citation"}  # a published from-scratch figure for the task


def accepted_keywords(target: Callable) -> set[str] | None:
    """Keyword arguments ``target`` (a function or a class) accepts, following ``**kwargs`` into base classes;
    ``None`` when it accepts any."""
    functions = (
        [base.__init__ for base in target.__mro__ if "__init__" in vars(base)] if inspect.isclass(target) else [target]
    )
    names: set[str] = set()
    for function in functions:
        parameters = inspect.signature(function).parameters.values()
        names |= {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            return names
    return None


def _check_keys(section: str, given: dict[str, Any], valid: set[str] | None) -> None:
    unknown = set(given) - valid if valid is not None else set()
    if unknown:
        raise ValueError(f"unknown {section} key(s) {sorted(unknown)}; valid {section} keys: {sorted(valid)}")


def validate_config(config: dict[str, Any]) -> None:
    """Reject keys that nothing reads (a typo such as ``optim.lrr`` would otherwise be ignored silently), naming
    the valid ones. Each section is checked against its reader: ``data`` the task's DataModule, ``model`` the
    model's constructor, ``trainer`` Lightning's ``Trainer``, ``optim`` and ``logging`` the keys read here."""
    import lightning as L

    from asap.data import TASKS
    from asap.models import MODELS

    _check_keys("top-level", config, SECTIONS | RUN_KEYS)
    if config.get("task") not in TASKS:
        raise ValueError(f"unknown task {config.get('task')!r}; choose one of {sorted(TASKS)}")
    _check_keys("data", config.get("data", {}), accepted_keywords(TASKS[config["task"]]))
    model = dict(config.get("model", {}))
    name = model.pop("name", None)
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}")
    _check_keys("model", model, accepted_keywords(MODELS[name]))
    _check_keys("optim", config.get("optim", {}), OPTIM_KEYS)
    _check_keys("trainer", config.get("trainer", {}), accepted_keywords(L.Trainer))
    _check_keys("logging", config.get("logging", {}), LOGGING_KEYS)
    reference = config.get("reference")
    if reference is not None:
        if set(reference) != REFERENCE_KEYS:
            raise ValueError(f"reference needs exactly the keys {sorted(REFERENCE_KEYS)}, got {sorted(reference)}")
        if not 0 < float(reference["accuracy"]) <= 100:
            raise ValueError(f"reference accuracy is in percent, got {reference['accuracy']!r}")
