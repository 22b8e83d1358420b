"""How a model's predictions compare with a reference model's on the same test examples.

Accuracy alone is a blunt measure when the reference (a frozen teacher) is weak: two models can both score 28%
while disagreeing on half the examples. These measures compare predictions directly:

- **agreement**: the fraction of examples on which the two argmax predictions coincide;
- **KL**: the mean ``KL(p_teacher || p_student)`` of the class distributions (softmax of the logits);
- **paired interval**: Tango's score interval (90%, :func:`asap.stats.paired_difference_interval`) of
  ``accuracy(student) - accuracy(teacher)`` on the *same* test examples, so their shared difficulty cancels; it
  stays honest when few examples are discordant, where a percentile bootstrap collapses to a point.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asap.stats import paired_difference_interval


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


def compare_predictions(
    logits: Tensor, teacher_logits: Tensor, labels: Tensor, level: float = 0.90
) -> dict[str, float]:
    """Accuracy, agreement with the teacher's predictions, mean KL(teacher || model), and the paired score
    interval (two-sided, ``level``) of the accuracy difference to the teacher, from logits of the same examples."""
    prediction, teacher_prediction = logits.argmax(-1), teacher_logits.argmax(-1)
    correct, teacher_correct = prediction == labels, teacher_prediction == labels
    kl = F.kl_div(F.log_softmax(logits, -1), F.log_softmax(teacher_logits, -1), log_target=True, reduction="none")
    low, high = paired_difference_interval(correct.numpy(), teacher_correct.numpy(), level)
    return {
        "accuracy": correct.float().mean().item(),
        "agreement": (prediction == teacher_prediction).float().mean().item(),
        "kl_to_teacher": kl.sum(-1).mean().item(),
        "accuracy_diff": (correct.float().mean() - teacher_correct.float().mean()).item(),
        "accuracy_diff_low": low,
        "accuracy_diff_high": high,
    }
