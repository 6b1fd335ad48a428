"""Inference: a :class:`Predictor` (a trained model with its preprocessing and class names) and
:func:`predict_probabilities`, the one predict loop used by training, scoring and robustness."""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Iterable

import numpy as np
import torch

from data_io.domain import Domain
from study.engine.metrics import probabilities


@torch.no_grad()
def predict_probabilities(model: torch.nn.Module, batches: Iterable[torch.Tensor], device: torch.device,
                          *, autocast: Callable[[], ContextManager] = nullcontext,
                          channels_last: bool = False) -> np.ndarray:
    """Class probabilities ``[N, C]`` (float32 numpy) of preprocessed batches ``[B, 1, S, S]``,
    with the model in eval mode."""
    eval_mode(model)
    out = []
    for x in batches:
        x = x.to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast():
            out.append(probabilities(model(x)).float().cpu())
    return torch.cat(out).numpy()


def eval_mode(model: torch.nn.Module) -> None:
    try:
        model.eval()
    except (NotImplementedError, RuntimeError):  # torch.export modules are frozen in eval mode
        pass


@dataclass
class Predictor:
    """A classifier ready to score raw images ``[N, H, W]``: preprocessing, model, class names.

    ``model`` maps preprocessed images ``[B, 1, S, S]`` to logits ``[B, 1 or C]``.
    """

    model: torch.nn.Module
    class_names: list[str]
    image_size: int
    crop_fraction: float
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    source: str = ""
    model_config: dict | None = None
    domain: Domain | None = None     # the training data's domain (None: not recorded)

    @property
    def preprocess(self):
        from data_io import Preprocess

        return Preprocess(target_size=self.image_size, crop_fraction=self.crop_fraction)

    def tensors(self, images: np.ndarray) -> torch.Tensor:
        """Preprocessed images ``[N, 1, S, S]`` (float32, on the CPU)."""
        pre = self.preprocess
        chunks = [pre.batch(np.asarray(images[lo:lo + 512])) for lo in range(0, len(images), 512)]
        return torch.cat(chunks) if chunks else torch.zeros(0, 1, self.image_size, self.image_size)

    def probs_of(self, x: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """Class probabilities ``[N, C]`` of preprocessed images ``[N, 1, S, S]``, eval mode."""
        batches = (x[lo:lo + batch_size] for lo in range(0, len(x), batch_size))
        return predict_probabilities(self.model, batches, self.device)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.probs_of(self.tensors(images))

    @classmethod
    def from_trainer(cls, trainer, domain: Domain | None = None) -> "Predictor":
        """The trainer's model; ``domain``: the domain of the data it was trained on."""
        s = trainer.spec
        return cls(trainer.model, list(trainer.class_names), s.image_size, s.crop_fraction,
                   trainer.device, f"trained {s.label()}", trainer.model.config.to_dict(), domain)
