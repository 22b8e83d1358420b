"""The pre-registered rule that decides the paper's claim for one trained teacher (``experiments/verdict.yaml``).

numpy, pandas and PyYAML only: a reviewer recomputes every verdict from the committed files.

Statistics (:mod:`asap.stats`):

- *accuracy interval*: Tango's score interval (90%, two-sided) of ``accuracy(model) - accuracy(teacher)`` on
  the same test examples; against a margin ``delta`` (0.5 points; 1 point reported beside it) a model is
  **equivalent** when the interval lies inside ``[-delta, +delta]`` (TOST at alpha = 0.05) and **shown worse**
  when its upper end is below ``-delta``;
- *learned*: the teacher beats its constant predictor, exact binomial ``p < 0.001``;
- *speed interval*: each interleaved timing round ``r`` gives ``R_r = t_teacher,r / t_ASAP,r``, the teacher being
  the strongest implementation (the fastest by median of every implementation, eager and compiled); the
  speed-up is the median of ``R_r`` and its 95% interval the order-statistic one (ranks 4 and 12 of 15);
- *noise floor*: the ratio of one computation timed as two cases in the same rounds must lie in
  ``[0.91, 1.10]`` (after one rerun), else no speed verdict is given.

Verdict, by precedence (the first row that applies):

1. the teacher has not learned, or the softmax swap is not shown worse: **untestable** (which);
2. ASAP without its map is equivalent to the teacher: **vacuous**;
3. ASAP is shown worse, or the speed interval's upper end is below the claim (noise floor held):
   **not reproduced** (accuracy / speed);
4. ASAP equivalent, the speed interval's lower end at or above the claim, ASAP without its map shown worse,
   the noise floor held: **reproduced**;
5. anything else: **undecided** (which: the accuracy interval straddles the margin, the speed interval the
   claim, the map's ablation is undecided, or the noise floor failed).

Only the profile's pre-registered compile options (the operating point chosen on calibration data, the
paper's features) enter a verdict; every other frontier point is exploratory.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from asap.stats import binomial_sf, median_interval, paired_difference_interval

RULE_PATH = Path(__file__).resolve().parents[2] / "experiments" / "verdict.yaml"


@dataclass(frozen=True)
class VerdictRule:
    """The statistics of ``experiments/verdict.yaml`` (unknown or missing keys are errors)."""

    claim_speedup: float
    margin_points: float
    reported_margin_points: float
    level: float
    learned_alpha: float
    speed_level: float
    min_rounds: int
    noise_floor: tuple[float, float]
    noise_floor_reruns: int
    task_margin_points: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, config: dict[str, Any]) -> VerdictRule:
        expected = {
            "claim_speedup": None,
            "accuracy": {"interval", "level", "margin_points", "reported_margin_points", "task_margin_points"},
            "learned": {"alpha"},
            "speed": {"level", "min_rounds"},
            "noise_floor": {"low", "high", "reruns"},
        }
        if set(config) != set(expected):
            raise ValueError(f"the verdict rule needs exactly the keys {sorted(expected)}, got {sorted(config)}")
        for key, keys in expected.items():
            if keys is not None and set(config[key]) != keys:
                raise ValueError(f"verdict rule {key!r} needs exactly {sorted(keys)}, got {sorted(config[key])}")
        accuracy = config["accuracy"]
        if accuracy["interval"] != "tango":
            raise ValueError(f"unknown accuracy interval {accuracy['interval']!r}; this rule knows 'tango'")
        return cls(
            claim_speedup=float(config["claim_speedup"]),
            margin_points=float(accuracy["margin_points"]),
            reported_margin_points=float(accuracy["reported_margin_points"]),
            level=float(accuracy["level"]),
            learned_alpha=float(config["learned"]["alpha"]),
            speed_level=float(config["speed"]["level"]),
            min_rounds=int(config["speed"]["min_rounds"]),
            noise_floor=(float(config["noise_floor"]["low"]), float(config["noise_floor"]["high"])),
            noise_floor_reruns=int(config["noise_floor"]["reruns"]),
            task_margin_points={str(k): float(v) for k, v in (accuracy["task_margin_points"] or {}).items()},
        )

    @classmethod
    def load(cls, path: str | Path = RULE_PATH) -> VerdictRule:
        with open(path) as file:
            config = yaml.safe_load(file)
        if not isinstance(config, dict):
            raise ValueError(f"{path}: a verdict rule is a mapping, got {type(config).__name__}")
        return cls.from_mapping(config)

    def margin(self, task: str) -> float:
        """The task's margin as a fraction (0.005 for 0.5 points)."""
        return self.task_margin_points.get(task, self.margin_points) / 100


def compare_to_margin(low: float, high: float, margin: float) -> str:
    """``equivalent`` (inside ``[-margin, margin]``), ``shown worse`` (above nothing but ``-margin``),
    ``shown better`` (below nothing but ``+margin``) or ``undecided``."""
    if -margin <= low and high <= margin:
        return "equivalent"
    if high < -margin:
        return "shown worse"
    if low > margin:
        return "shown better"
    return "undecided"


@dataclass(frozen=True)
class TeacherEvidence:
    """What one teacher's verdict is computed from: per test example whether each model is right (teacher,
    its softmax swap, ASAP at the pre-registered operating point, ASAP without its map), the constant
    predictor's accuracy, the per-round speed-ups over the strongest teacher, and whether the noise floor
    held."""

    task: str
    teacher_correct: np.ndarray
    softmax_swap_correct: np.ndarray
    asap_correct: np.ndarray
    no_map_correct: np.ndarray
    constant_predictor_acc: float
    speedup_rounds: np.ndarray
    noise_floor_held: bool

    def __post_init__(self) -> None:
        for item in fields(self):
            if item.name.endswith("_correct"):
                value = np.asarray(getattr(self, item.name))
                if value.dtype != bool or value.shape != np.shape(self.teacher_correct):
                    raise ValueError(f"{item.name} must be a bool vector like teacher_correct, got {value.dtype}")


@dataclass(frozen=True)
class Verdict:
    verdict: str
    reason: str
    numbers: dict[str, Any]


def decide(evidence: TeacherEvidence, rule: VerdictRule) -> Verdict:
    """The verdict of the module docstring's table, with its reason and every number behind it."""
    margin = rule.margin(evidence.task)
    teacher = np.asarray(evidence.teacher_correct)
    n = len(teacher)
    learned_p = binomial_sf(int(teacher.sum()), n, evidence.constant_predictor_acc)

    def interval(correct: np.ndarray) -> tuple[float, float]:
        return paired_difference_interval(correct, teacher, rule.level)

    swap, asap, no_map = (
        interval(c) for c in (evidence.softmax_swap_correct, evidence.asap_correct, evidence.no_map_correct)
    )
    rounds = np.asarray(evidence.speedup_rounds, dtype=float)
    if len(rounds) < rule.min_rounds:
        raise ValueError(f"{evidence.task}: {len(rounds)} timing rounds, the rule needs {rule.min_rounds}")
    speedup, speed_low, speed_high = median_interval(rounds, rule.speed_level)
    numbers = {
        "test_samples": n,
        "teacher_acc": float(teacher.mean()),
        "learned_p": learned_p,
        "margin": margin,
        "softmax_swap_interval": swap,
        "asap_interval": asap,
        "asap_vs_margin": compare_to_margin(*asap, margin),
        "asap_vs_reported_margin": compare_to_margin(*asap, rule.reported_margin_points / 100),
        "no_map_interval": no_map,
        "speedup": speedup,
        "speedup_interval": (speed_low, speed_high),
        "noise_floor_held": evidence.noise_floor_held,
    }

    def verdict(name: str, reason: str) -> Verdict:
        return Verdict(name, reason, numbers)

    if learned_p >= rule.learned_alpha:
        return verdict("untestable (not learned)", f"teacher vs constant predictor: p = {learned_p:.2g}")
    if compare_to_margin(*swap, margin) != "shown worse":
        return verdict(
            "untestable (attention not needed)", f"softmax swap {points_text(swap)} not below -{_pts(margin)}"
        )
    no_map_result = compare_to_margin(*no_map, margin)
    if no_map_result == "equivalent":
        return verdict("vacuous", f"ASAP without its map {points_text(no_map)} is within ±{_pts(margin)}")
    asap_result = numbers["asap_vs_margin"]
    speed_text = f"speed-up {speedup:.2f}x [{speed_low:.2f}, {speed_high:.2f}] vs {rule.claim_speedup}x"
    if asap_result == "shown worse":
        return verdict("not reproduced (accuracy)", f"ASAP {points_text(asap)} below -{_pts(margin)}")
    if evidence.noise_floor_held and speed_high < rule.claim_speedup:
        return verdict("not reproduced (speed)", speed_text)
    if (
        asap_result == "equivalent"
        and speed_low >= rule.claim_speedup
        and no_map_result == "shown worse"
        and evidence.noise_floor_held
    ):
        return verdict("reproduced", f"ASAP {points_text(asap)} within ±{_pts(margin)}; {speed_text}")
    open_questions = []
    if asap_result != "equivalent":
        open_questions.append("accuracy")
    if not evidence.noise_floor_held:
        open_questions.append("noise floor")
    elif speed_low < rule.claim_speedup:
        open_questions.append("speed")
    if no_map_result != "shown worse":
        open_questions.append("no-map")
    return verdict(f"undecided ({', '.join(open_questions)})", f"ASAP {points_text(asap)}; {speed_text}")


def _pts(fraction: float) -> str:
    return f"{100 * fraction:.2g} pts"


def points_text(interval: tuple[float, float], unit: str = " pts") -> str:
    """An interval of fractions in accuracy points: ``[-0.69, -0.30] pts``."""
    return f"[{100 * interval[0]:+.2f}, {100 * interval[1]:+.2f}]{unit}"
