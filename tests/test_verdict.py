"""The pre-registered verdict rule on constructed teachers: one case per row of its precedence table."""

from __future__ import annotations

import numpy as np
import pytest

from asap.report.verdict import RULE_PATH, TeacherEvidence, VerdictRule, compare_to_margin, decide

RULE = VerdictRule.load(RULE_PATH)
N = 10_000


def correct(right: int, flips_to_wrong: int = 0, flips_to_right: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A teacher right on the first ``right`` of N examples, and a model that differs from it on the given
    numbers of examples (wrong where the teacher is right, right where it is wrong)."""
    teacher = np.arange(N) < right
    model = teacher.copy()
    model[:flips_to_wrong] = False
    model[right : right + flips_to_right] = True
    return teacher, model


def evidence(
    asap=(0, 0), no_map=(300, 0), swap=(400, 0), speedups=None, teacher_right=9000, constant=0.1, noise_floor=True
) -> TeacherEvidence:
    teacher, asap_correct = correct(teacher_right, *asap)
    return TeacherEvidence(
        task="constructed",
        teacher_correct=teacher,
        softmax_swap_correct=correct(teacher_right, *swap)[1],
        asap_correct=asap_correct,
        no_map_correct=correct(teacher_right, *no_map)[1],
        constant_predictor_acc=constant,
        speedup_rounds=np.linspace(6.0, 8.0, 15) if speedups is None else np.asarray(speedups),
        noise_floor_held=noise_floor,
    )


def test_a_real_reproduction_is_reproduced():
    result = decide(evidence(asap=(12, 10)), RULE)
    assert result.verdict == "reproduced"
    assert result.numbers["asap_vs_margin"] == "equivalent" and result.numbers["speedup"] == pytest.approx(7.0)


def test_a_teacher_that_has_not_learned_is_untestable():
    assert decide(evidence(teacher_right=6250, constant=0.62), RULE).verdict == "untestable (not learned)"


def test_softmax_passing_the_old_rule_is_untestable():
    """The old rule: 'the 95% bootstrap interval contains 0'. A softmax swap wrong on 30 more examples than
    right passes it (at N = 10,000) and would 'match'; here it is not shown worse than the margin, so the
    teacher's accuracy does not need its attention."""
    result = decide(evidence(asap=(30, 10), swap=(30, 10)), RULE)
    low, high = result.numbers["softmax_swap_interval"]
    assert low < 0 < high or high < 0 and high > -RULE.margin("constructed")
    assert result.verdict == "untestable (attention not needed)"


def test_asap_without_its_map_matching_is_vacuous():
    assert decide(evidence(no_map=(5, 5)), RULE).verdict == "vacuous"


def test_asap_shown_worse_is_not_reproduced_on_accuracy():
    assert decide(evidence(asap=(150, 0)), RULE).verdict == "not reproduced (accuracy)"


def test_a_speed_interval_below_the_claim_is_not_reproduced_on_speed():
    assert decide(evidence(speedups=np.linspace(1.5, 2.5, 15)), RULE).verdict == "not reproduced (speed)"


def test_a_speed_interval_straddling_the_claim_is_undecided():
    result = decide(evidence(speedups=np.linspace(4.0, 7.0, 15)), RULE)
    low, high = result.numbers["speedup_interval"]
    assert low < RULE.claim_speedup < high and result.verdict == "undecided (speed)"


def test_a_failed_noise_floor_leaves_speed_undecided():
    assert decide(evidence(noise_floor=False), RULE).verdict == "undecided (noise floor)"
    # ...but never hides an accuracy failure
    assert decide(evidence(asap=(150, 0), noise_floor=False), RULE).verdict == "not reproduced (accuracy)"


def test_few_discordant_examples_leave_the_interval_wide():
    """Wrong on 0-3 examples and right on none at N = 1,000: the old bootstrap interval's upper end was 0; the
    score interval stays wider than a point, so the margin is not met on so few examples."""
    for wrong in range(4):
        teacher = np.arange(1000) < 900
        asap = teacher.copy()
        asap[:wrong] = False
        low, high = decide(
            TeacherEvidence("tiny", teacher, ~teacher, asap, ~teacher, 0.1, np.full(15, 7.0), True), RULE
        ).numbers["asap_interval"]
        assert high > 0 and high - low > 0.005


def test_the_map_ablation_undecided_leaves_the_verdict_undecided():
    assert decide(evidence(no_map=(40, 0)), RULE).verdict == "undecided (no-map)"


def test_compare_to_margin():
    assert compare_to_margin(-0.004, 0.003, 0.005) == "equivalent"
    assert compare_to_margin(-0.02, -0.006, 0.005) == "shown worse"
    assert compare_to_margin(-0.006, 0.001, 0.005) == "undecided"


def test_the_rule_rejects_unknown_keys_and_too_few_rounds(tmp_path):
    path = tmp_path / "verdict.yaml"
    path.write_text(RULE_PATH.read_text() + "surprise: 1\n")
    with pytest.raises(ValueError, match="exactly the keys"):
        VerdictRule.load(path)
    with pytest.raises(ValueError, match="timing rounds"):
        decide(evidence(speedups=np.full(5, 7.0)), RULE)
