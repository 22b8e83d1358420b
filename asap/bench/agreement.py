"""How a model's predictions compare with a reference model's on the same test examples.

Accuracy alone is a blunt measure when the reference (a frozen teacher) is weak: two models can both score 28%
while disagreeing on half the examples. These measures compare predictions directly:

- **agreement**: the fraction of examples on which the two argmax predictions coincide;
- **KL**: the mean ``KL(p_teacher || p_student)`` of the class distributions (softmax of the logits);
- **paired bootstrap**: a 95% interval of ``accuracy(student) - accuracy(teacher)`` from resampling the *same*
  test examples for both (Efron & Tibshirani 1993, ch. 16), so the shared difficulty of examples cancels.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


@torch.no_grad()
def predictions(
    model: nn.Module, loader: Iterable[tuple[Tensor, Tensor]], max_batches: int | None = None
) -> tuple[Tensor, Tensor]:
    """``(logits (N, C), labels (N,))`` of ``model`` (in eval mode) over ``loader``, on the model's device."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    logits, labels = [], []
    try:
        for index, (inputs, targets) in enumerate(loader):
            if max_batches is not None and index == max_batches:
                break
            logits.append(model(inputs.to(device)).float().cpu())
            labels.append(targets)
    finally:
        model.train(was_training)
    if not logits:
        raise ValueError("the loader gave no batch")
    return torch.cat(logits), torch.cat(labels)


def accuracy(model: nn.Module, loader: Iterable[tuple[Tensor, Tensor]], max_batches: int | None = None) -> float:
    """Top-1 accuracy of ``model`` over ``loader``."""
    logits, labels = predictions(model, loader, max_batches)
    return (logits.argmax(-1) == labels).float().mean().item()


def paired_bootstrap_interval(
    correct: Tensor, reference_correct: Tensor, resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of ``mean(correct) - mean(reference_correct)`` over resamples of the examples.

    Both models are scored on the same resampled examples (a paired bootstrap). The resampling is seeded, so
    every model compared against one reference sees the same resamples.

    >>> same = torch.tensor([True, False] * 50)
    >>> paired_bootstrap_interval(same, same)
    (0.0, 0.0)
    """
    if correct.shape != reference_correct.shape or correct.ndim != 1:
        raise ValueError(f"need two (N,) vectors, got {tuple(correct.shape)} and {tuple(reference_correct.shape)}")
    differences = (correct.double() - reference_correct.double()).numpy()
    rng = np.random.default_rng(seed)
    means = np.concatenate(
        [
            differences[rng.integers(0, len(differences), size=(min(200, resamples - start), len(differences)))].mean(1)
            for start in range(0, resamples, 200)
        ]
    )
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def compare_predictions(
    logits: Tensor, teacher_logits: Tensor, labels: Tensor, resamples: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Accuracy, agreement with the teacher's predictions, mean KL(teacher || model), and the paired-bootstrap
    interval of the accuracy difference to the teacher, from logits of the same examples."""
    prediction, teacher_prediction = logits.argmax(-1), teacher_logits.argmax(-1)
    correct, teacher_correct = prediction == labels, teacher_prediction == labels
    kl = F.kl_div(F.log_softmax(logits, -1), F.log_softmax(teacher_logits, -1), log_target=True, reduction="none")
    low, high = paired_bootstrap_interval(correct, teacher_correct, resamples, seed=seed)
    return {
        "accuracy": correct.float().mean().item(),
        "agreement": (prediction == teacher_prediction).float().mean().item(),
        "kl_to_teacher": kl.sum(-1).mean().item(),
        "accuracy_diff": (correct.float().mean() - teacher_correct.float().mean()).item(),
        "accuracy_diff_low": low,
        "accuracy_diff_high": high,
    }
