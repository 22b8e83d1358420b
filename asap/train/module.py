"""One LightningModule for classification with any model and attention variant."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from asap.models import create_model


class Classifier(L.LightningModule):
    """Cross-entropy classifier; AdamW with linear warm-up then cosine decay.

    Its hyperparameters (model name and arguments, attention variant, optimiser) are saved in every
    checkpoint, so :meth:`load_from_checkpoint` rebuilds the exact model.
    """

    def __init__(self, model: dict[str, Any], optim: dict[str, Any], run: dict[str, Any] | None = None) -> None:
        """``model``: arguments of :func:`asap.models.create_model`; ``optim``: the optimiser section;
        ``run``: the whole run config, kept so that a checkpoint can rebuild its data (e.g. for compile)."""
        super().__init__()
        self.save_hyperparameters()
        self.model = create_model(**model)

    @property
    def variant(self) -> str:
        return self.hparams.model["attention"]

    def forward(self, inputs: Tensor) -> Tensor:
        return self.model(inputs)

    def _step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        inputs, labels = batch
        logits = self(inputs)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.hparams.optim.get("label_smoothing", 0.0))
        accuracy = (logits.argmax(dim=-1) == labels).float().mean()
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=stage != "test")
        self.log(f"{stage}/acc", accuracy, on_step=on_step, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self) -> dict[str, Any]:
        optim = self.hparams.optim
        decay, no_decay = [], []
        for parameter in self.parameters():
            if not parameter.requires_grad:  # frozen (a fine-tune of the dual maps only)
                continue
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": optim.get("weight_decay", 0.0)},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=optim["lr"],
            betas=tuple(optim.get("betas", (0.9, 0.999))),
        )
        total = max(1, self.trainer.estimated_stepping_batches)
        warmup = int(optim.get("warmup_fraction", 0.05) * total)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = (step - warmup) / max(1, total - warmup)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
