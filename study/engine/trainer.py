"""The training engine: one train/evaluate loop shared by Tune trials and the standalone rerun.

Reads top to bottom: a :class:`RunSpec` says what to train, a :class:`Trainer` holds the model,
optimiser and epoch counter, :func:`fit` runs epochs and hands each epoch's record to a callback
(``tune.report`` in a trial, MLflow logging in the rerun). Checkpoints are self-describing
(spec, class names, model config, weights, optimiser, epoch, history) and load with
``torch.load(weights_only=True)``.

Reproducible on CPU: the model is initialised from ``seed``; epoch ``e`` shuffles and augments
with generators seeded from ``(seed, e)``, so a run resumed from a checkpoint continues exactly
as if it had not stopped.

Memory (``study.engine.memory_plan``): before training, the step's peak memory is estimated and the
batch split into micro-batches (gradients accumulated) if it does not fit the device; a CUDA
out-of-memory error that still happens halves the micro-batch and retries the epoch once from
its start.
"""
from __future__ import annotations

import io
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from common.atomic import atomic_file
from lensnets.compiled import CompiledForward
from study.engine.checkpoint import load_checkpoint, read_safely
from study.engine.memory_plan import TrialDoesNotFit, plan_memory
from study.engine.metrics import classification_metrics, cross_entropy
from study.engine.predict import predict_probabilities
from study.engine.spec import RunSpec, Split, pick_device

RECALIBRATION_IMAGES = 1024   # training images used to re-estimate BatchNorm statistics per epoch


class Trainer:
    """Model + optimiser + epoch counter for one :class:`RunSpec`."""

    def __init__(self, spec: RunSpec, class_names: list[str], device: str | None = None):
        from data_io import Preprocess
        from lensnets import ModelConfig, build_model, set_memory_mode

        self.spec, self.class_names = spec, list(class_names)
        self.device = pick_device(device)
        torch.manual_seed(spec.seed)
        config = ModelConfig(
            name=spec.model, width=spec.width, width_mode=spec.width_mode,
            num_classes=len(class_names), input_size=spec.image_size, head=spec.head,
        )
        self.model = build_model(config).to(self.device)
        self.plan = plan_memory(
            self.model, spec.label(), spec.batch_size, memory=spec.memory, amp=spec.amp,
            channels_last=spec.channels_last, device=self.device,
            budget_gb=spec.memory_budget_gb, gpu_share=spec.gpu_share)
        set_memory_mode(self.model, self.plan.memory_mode)
        if self.plan.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.micro_batch = self.plan.micro_batch
        self.forward = CompiledForward(self.model, spec.label()) if spec.compile else self.model
        self.oom_hook: Callable[[int], None] | None = None   # tests: called before each micro-step
        optimizer_cls = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[spec.optimizer]
        self.optimizer = optimizer_cls(self.model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
        self.preprocess = Preprocess(target_size=spec.image_size, crop_fraction=spec.crop_fraction)
        self.epoch = 0
        self.history: list[dict] = []

    # ------------------------------------------------------------------ one epoch

    def train_epoch(self, split: Split) -> dict:
        """One pass over ``split``; on a CUDA out-of-memory error, once more at half the micro-batch."""
        if self.device.type != "cuda" and self.oom_hook is None:   # no out-of-memory errors to expect
            return self._train_epoch(split)
        start_state = self._snapshot()
        try:
            return self._train_epoch(split)
        except torch.OutOfMemoryError:
            failed = self.micro_batch
            if failed <= 1:
                raise TrialDoesNotFit(f"{self.spec.label()} ran out of GPU memory at one image per "
                                      "micro-batch; use a smaller width or image size") from None
        self._restore(start_state)
        self.micro_batch = max(1, failed // 2)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        print(f"note: {self.spec.label()}: out of GPU memory at micro-batch {failed}; "
              f"retrying epoch {self.epoch + 1} at {self.micro_batch}", flush=True)
        try:
            return self._train_epoch(split)
        except torch.OutOfMemoryError:
            raise TrialDoesNotFit(f"{self.spec.label()} ran out of GPU memory at micro-batch {failed} "
                                  f"and again at {self.micro_batch}; lower search.batch_sizes or "
                                  "train.memory_budget_gb") from None

    def _train_epoch(self, split: Split) -> dict:
        """One pass over ``split`` in a seeded random order with seeded augmentation."""
        from data_io import random_augment

        self.model.train()
        order = torch.randperm(len(split), generator=self._generator("cpu", salt=1)).numpy()
        augment_gen = self._generator(self.device.type, salt=2)
        total, seen, start = 0.0, 0, time.perf_counter()
        for idx in np.array_split(order, max(1, -(-len(order) // self.spec.batch_size))):
            x, y = self._batch(split, np.sort(idx))
            x = random_augment(x, augment_gen, rotate=self.spec.rotate, flip=self.spec.flip)
            self.optimizer.zero_grad(set_to_none=True)
            total += self.accumulate_gradients(x, y)
            self.optimizer.step()
            seen += len(idx)
        steps_done = time.perf_counter()
        self.recalibrate_batchnorm(split)
        end = time.perf_counter()
        self.epoch += 1
        return {"train_loss": total / seen, "train_images_per_s": seen / (end - start),
                **self.plan.summary(), "micro_batch": self.micro_batch,
                "time_train_s": steps_done - start, "time_bn_s": end - steps_done}

    def accumulate_gradients(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Add to ``.grad`` the gradient of the batch's mean loss, ``micro_batch`` images at a time.

        Each micro-batch's mean loss is weighted by its share of the batch, so the sum is the
        gradient of the whole batch's mean loss (batch norm aside: it sees each micro-batch's
        statistics). Returns the summed loss over the batch's images.
        """
        if self.plan.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        total = 0.0
        for lo in range(0, len(y), self.micro_batch):
            xs, ys = x[lo:lo + self.micro_batch], y[lo:lo + self.micro_batch]
            if self.oom_hook is not None:
                self.oom_hook(len(ys))
            with self._autocast():
                loss = self._loss(self.forward(xs), ys)
            (loss * (len(ys) / len(y))).backward()
            total += float(loss.detach()) * len(ys)
        return total

    @torch.no_grad()
    def recalibrate_batchnorm(self, split: Split) -> None:
        """Replace BatchNorm running statistics by exact averages over fixed training images.

        The running averages (momentum 0.1) lag behind weights that change quickly; on small
        data they made eval-mode validation AUC swing between ~0.6 and ~0.9 from one epoch to
        the next while batch statistics gave a steady ~0.9. Re-estimating the statistics with a
        cumulative average over up to ``RECALIBRATION_IMAGES`` un-augmented training images
        (evenly spaced, so the same images every epoch) removes the lag ("precise BN").
        """
        norms = [m for m in self.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None   # cumulative average over the batches below
        self.model.train()
        picked = np.unique(np.linspace(0, len(split) - 1, min(len(split), RECALIBRATION_IMAGES)).astype(int))
        chunk = min(self.spec.batch_size, self.plan.eval_batch)
        for lo in range(0, len(picked), chunk):
            idx = picked[lo:lo + chunk]
            if len(idx) < 2:
                continue
            with self._autocast():
                self.model(self._batch(split, idx)[0])
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum

    def predict(self, images: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Class probabilities ``[N, C]`` of images ``[N, H, W]`` in eval mode."""
        batch_size = batch_size or self.plan.eval_batch
        batches = (self.preprocess.batch(np.asarray(images[lo:lo + batch_size]))
                   for lo in range(0, len(images), batch_size))
        return predict_probabilities(self.model, batches, self.device, autocast=self._autocast,
                                     channels_last=self.plan.channels_last)

    def evaluate(self, split: Split, prefix: str = "val_") -> dict:
        """Loss and metrics of ``split`` (probability-based AUCs, accuracy), keys prefixed."""
        probs = self.predict(split.images)
        metrics = classification_metrics(probs, split.labels, self.class_names)
        metrics["loss"] = cross_entropy(probs, split.labels)
        return {f"{prefix}{k}": v for k, v in metrics.items()}

    # ------------------------------------------------------------------ checkpoints

    def save(self, path: Path) -> None:
        state = {
            "spec": self.spec.to_dict(),
            "class_names": self.class_names,
            "model_config": self.model.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "history": self.history,
        }
        with atomic_file(Path(path)) as fh:
            torch.save(state, fh)

    def load(self, path: Path) -> None:
        state = load_checkpoint(path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.history = int(state["epoch"]), list(state["history"])

    @classmethod
    def from_checkpoint(cls, path: Path, device: str | None = None) -> "Trainer":
        state = load_checkpoint(path)
        trainer = cls(RunSpec.from_dict(state["spec"]), state["class_names"], device=device)
        trainer.load(path)
        return trainer

    # ------------------------------------------------------------------ helpers

    def _batch(self, split: Split, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.preprocess.batch(np.asarray(split.images[idx])).to(self.device, non_blocking=True)
        y = torch.as_tensor(np.array(split.labels[idx]), dtype=torch.long, device=self.device)
        return x, y

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] == 1:
            return F.binary_cross_entropy_with_logits(logits[:, 0].float(), y.float())
        return F.cross_entropy(logits.float(), y)

    def _generator(self, device: str, salt: int) -> torch.Generator:
        gen = torch.Generator(device=device)
        gen.manual_seed(self.spec.seed * 1_000_003 + self.epoch * 101 + salt)
        return gen

    def _autocast(self):
        if self.plan.autocast is not None:
            return torch.autocast(self.device.type, dtype=self.plan.autocast)
        return nullcontext()

    def _snapshot(self) -> bytes:
        """Model and optimiser state (on the CPU) to restart an epoch from."""
        buffer = io.BytesIO()
        torch.save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}, buffer)
        return buffer.getvalue()

    def _restore(self, snapshot: bytes) -> None:
        state = read_safely(io.BytesIO(snapshot))
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])


def fit(trainer: Trainer, train: Split, val: Split, until_epoch: int,
        on_epoch: Callable[[dict], None] = lambda record: None) -> list[dict]:
    """Train until ``trainer.epoch == until_epoch``; after each epoch evaluate ``val`` and call back.

    The record handed to ``on_epoch`` holds ``epoch`` (1-based), train loss and throughput, the
    seconds spent in gradient steps, precise batch norm and validation (``time_train_s``,
    ``time_bn_s``, ``time_val_s``), and the validation metrics (``val_loss``, ``val_acc``,
    ``val_auc_micro``, ``val_auc_macro``, ``val_auc_<class>``). It is appended to ``trainer.history`` before the callback runs, so a
    checkpoint saved in the callback includes it.
    """
    while trainer.epoch < until_epoch:
        record = trainer.train_epoch(train)
        start = time.perf_counter()
        record.update(trainer.evaluate(val))
        record["time_val_s"] = time.perf_counter() - start
        record["epoch"] = trainer.epoch
        trainer.history.append(record)
        on_epoch(record)
    return trainer.history
