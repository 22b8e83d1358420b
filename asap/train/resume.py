"""Training that survives being killed: the same command, run again, continues from the last checkpoint.

Lightning 2.x restores the model, the optimiser, the learning-rate schedule, the loop's progress (epoch, batch,
global step) and the callbacks' states (the best checkpoint and its score, the ``max_time`` timer) from a
checkpoint given to ``trainer.fit(ckpt_path=...)``. Three pieces of state it does not keep, kept here:

* **The data position.** A shuffled epoch is a function of ``(seed, epoch)`` alone (the training samplers,
  :class:`asap.data.base.EpochPermutation` and :class:`asap.data.base.LengthBucketSampler`, draw it from
  :func:`asap.data.base.epoch_generator`), so nothing about
  the data needs saving: on a restart :class:`ResumeDataPosition` tells the training sampler the epoch and how
  many of its batches Lightning's restored progress says were done, and the sampler skips them. This reads
  the progress at ``on_train_start``, after the restore, so it does not depend on the dataloader's own
  ``state_dict`` being loaded, which ``trainer.estimated_stepping_batches`` in ``configure_optimizers`` is
  reported to prevent on resume (Lightning issue 20550: that call sets up the data before the checkpoint's
  loader states are read).
* **The random number generators** (torch, numpy, Python: dropout, augmentation), in every checkpoint
  (:class:`RNGStates`), as plain tensors and numbers, so that the checkpoint loads with ``weights_only=True``.
* **Atomic files.** Every checkpoint is written beside its path and renamed into place
  (:class:`AtomicCheckpointIO`), so a kill never leaves half a ``last.ckpt``; the best checkpoint reaches the
  workflow's declared output only when training ends (:class:`PublishBest`).

With ``deterministic=True`` and single-process loading the resumed run's final weights equal an uninterrupted
run's bit for bit (``tests/test_resume.py`` kills a real training process mid-epoch to check it).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from asap.results import write_atomic


class ResumeDataPosition(L.Callback):
    """At the start of a resumed fit, tells the training loader's sampler (one with ``resume(epoch, skip)``:
    :class:`asap.data.base.EpochPermutation`, or the batch sampler :class:`asap.data.base.LengthBucketSampler`)
    the epoch and how many of its items the restored progress says were trained on (Lightning sets the epoch of
    every later one through ``set_epoch``)."""

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not trainer.fit_loop.restarting:
            return
        loader = trainer.train_dataloader
        if hasattr(loader.batch_sampler, "resume"):
            sampler, per_batch = loader.batch_sampler, 1
        elif hasattr(loader.sampler, "resume"):
            sampler, per_batch = loader.sampler, loader.batch_size
        else:
            raise TypeError(f"the training loader's sampler {type(loader.sampler).__name__} cannot resume an epoch")
        # batches whose optimiser step ran (a checkpoint written at a batch's end counts that batch)
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        sampler.resume(trainer.current_epoch, done * per_batch)


class RNGStates(L.Callback):
    """The torch (CPU and CUDA), numpy and Python generators' states in every checkpoint, restored on resume."""

    def state_dict(self) -> dict[str, Any]:
        _, keys, position, has_gauss, cached = np.random.get_state()
        version, internal, gauss = random.getstate()
        state = {
            "torch": torch.get_rng_state(),
            "numpy": {
                "keys": torch.from_numpy(keys.astype(np.int64)),
                "position": int(position),
                "has_gauss": int(has_gauss),
                "cached_gaussian": float(cached),
            },
            "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = state  # applied when training starts: see on_train_start

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        """Restore the saved states just before the first resumed batch: setting up the data in between draws from
        torch's generator (each new DataLoader iterator draws its base seed), which the uninterrupted run did
        before the checkpoint was written."""
        state, self._pending = getattr(self, "_pending", None), None
        if state is None:
            return
        torch.set_rng_state(state["torch"])
        numpy = state["numpy"]
        np.random.set_state(
            (
                "MT19937",
                numpy["keys"].numpy().astype(np.uint32),
                numpy["position"],
                numpy["has_gauss"],
                numpy["cached_gaussian"],
            )
        )
        python = state["python"]
        random.setstate((python["version"], tuple(python["internal"].tolist()), python["gauss"]))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class PublishBest(L.Callback):
    """When training ends, copies the in-progress best checkpoint (kept off the workflow's declared output, which
    Snakemake deletes when a job fails) to ``path``, atomically, and points the checkpointer there, so that
    testing and the W&B artifact use the published file. A copy: a rerun that resumes from ``last.ckpt`` finds
    the in-progress best where the restored checkpointer state says it is."""

    def __init__(self, checkpoint: ModelCheckpoint, path: str | Path) -> None:
        self.checkpoint, self.path = checkpoint, Path(path)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.is_global_zero and self.checkpoint.best_model_path:
            write_atomic(self.path, lambda tmp: shutil.copyfile(self.checkpoint.best_model_path, tmp))
        trainer.strategy.barrier()
        self.checkpoint.best_model_path = str(self.path)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, each file written beside its path and renamed into place."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        write_atomic(path, lambda tmp: torch.save(checkpoint, tmp))
