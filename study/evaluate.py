"""Score a trained classifier on a dataset: metrics, rotation robustness, ROC and confusion plots.

Models come from three places (:func:`load_model`):

- ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` - the MLflow model registry;
- ``runs:/RUN_ID/model`` - a model logged to a run;
- a file: the project's weights format (``model_weights.pt`` written by ``best``: a state dict
  plus the ``ModelConfig``, class names and preprocessing as plain data) or a training
  checkpoint of :mod:`study.engine`.

What is unpickled: files are read with ``torch.load(weights_only=True)`` (tensors and plain
containers only, never arbitrary objects). MLflow models logged by ``best`` are torch.export
(``pt2``) graphs; ``mlflow.pytorch.load_model`` checks the archive holds no pickle before loading
it. A pickle-format MLflow model (logged by other code) would unpickle arbitrary Python objects:
load those only from a registry you trust.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from common.errors import UsageError
from study.metrics import classification_metrics, confusion, probabilities

WEIGHTS_FORMAT = "lens-model-weights"
WEIGHTS_VERSION = 1
PLOTS = ("roc.png", "confusion.png")


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

    @property
    def preprocess(self):
        from data_io import Preprocess

        return Preprocess(target_size=self.image_size, crop_fraction=self.crop_fraction)

    def tensors(self, images: np.ndarray) -> torch.Tensor:
        """Preprocessed images ``[N, 1, S, S]`` (float32, on the CPU)."""
        pre = self.preprocess
        chunks = [pre.batch(np.asarray(images[lo:lo + 512])) for lo in range(0, len(images), 512)]
        return torch.cat(chunks) if chunks else torch.zeros(0, 1, self.image_size, self.image_size)

    @torch.no_grad()
    def probs_of(self, x: torch.Tensor, batch_size: int = 256) -> np.ndarray:
        """Class probabilities ``[N, C]`` of preprocessed images ``[N, 1, S, S]``, eval mode."""
        _eval_mode(self.model)
        out = [probabilities(self.model(x[lo:lo + batch_size].to(self.device))).cpu()
               for lo in range(0, len(x), batch_size)]
        return torch.cat(out).numpy()

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.probs_of(self.tensors(images))

    @classmethod
    def from_trainer(cls, trainer) -> "Predictor":
        s = trainer.spec
        return cls(trainer.model, list(trainer.class_names), s.image_size, s.crop_fraction,
                   trainer.device, f"trained {s.label()}", trainer.model.config.to_dict())


def _eval_mode(model) -> None:
    try:
        model.eval()
    except (NotImplementedError, RuntimeError):  # torch.export modules are frozen in eval mode
        pass


# ----------------------------------------------------------------------------- saving and loading


def save_weights(predictor: Predictor, path: Path) -> Path:
    """The safe file format: state dict + ModelConfig + class names + preprocessing, plain data."""
    from common.atomic import atomic_file

    state = {
        "format": WEIGHTS_FORMAT, "version": WEIGHTS_VERSION,
        "model_config": dict(predictor.model_config or predictor.model.config.to_dict()),
        "class_names": list(predictor.class_names),
        "preprocess": {"image_size": predictor.image_size, "crop_fraction": predictor.crop_fraction},
        "state_dict": {k: v.detach().cpu() for k, v in predictor.model.state_dict().items()},
    }
    with atomic_file(Path(path)) as fh:
        torch.save(state, fh)
    return Path(path)


def load_model(ref: str, tracking_uri: str | None = None, device: str | None = None) -> Predictor:
    """A :class:`Predictor` for a registry model, a run's model or a file (see module docstring)."""
    from study.engine import pick_device

    dev = pick_device(device)
    if ref.startswith(("models:/", "runs:/")):
        return _load_mlflow(ref, tracking_uri, dev)
    return _load_file(Path(ref), dev)


def _load_file(path: Path, device: torch.device) -> Predictor:
    from lensnets import build_model

    if not path.is_file():
        raise UsageError(f"model {path} does not exist; pass a models:/NAME@best URI, "
                         "a runs:/RUN_ID/model URI, or a model_weights.pt file written by `best`")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # not a torch file, truncated, or holding non-weight objects
        raise UsageError(f"model file {path} is not a readable weights file ({type(err).__name__}); "
                         "pass a model_weights.pt written by `best` or a training checkpoint")
    if isinstance(state, dict) and state.get("format") == WEIGHTS_FORMAT:
        config, names = state["model_config"], state["class_names"]
        size, crop = state["preprocess"]["image_size"], state["preprocess"]["crop_fraction"]
        weights = state["state_dict"]
    elif isinstance(state, dict) and {"spec", "model", "model_config", "class_names"} <= set(state):
        config, names, weights = state["model_config"], state["class_names"], state["model"]
        size, crop = state["spec"]["image_size"], state["spec"]["crop_fraction"]
    else:
        raise UsageError(f"model file {path} is a torch file but not a model of this project "
                         "(no model config, class names and weights); pass a model_weights.pt from `best`")
    model = build_model(config)
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        raise UsageError(f"model file {path}: its weights do not fit its model config "
                         f"({str(err).splitlines()[0]}); the file is damaged or was edited")
    return Predictor(model.to(device).eval(), list(names), int(size), float(crop), device,
                     str(path), dict(config))


def _load_mlflow(ref: str, tracking_uri: str | None, device: torch.device) -> Predictor:
    import mlflow
    from mlflow.exceptions import MlflowException

    from study.tracking import connect

    uri = tracking_uri or "sqlite:///mlflow.db"
    connect(uri)
    mlflow.set_tracking_uri(uri)
    try:
        info = mlflow.models.get_model_info(ref)
        model = mlflow.pytorch.load_model(ref, map_location=device)
    except (MlflowException, OSError) as err:
        raise UsageError(f"model {ref} cannot be loaded from MLflow at {uri} "
                         f"({_first_line(err)}); check the name/alias or run id and --tracking-uri")
    meta = info.metadata or {}
    if not {"class_names", "image_size", "crop_fraction"} <= set(meta):
        raise UsageError(f"model {ref} is not a lens classifier of this project (no class names or "
                         "preprocessing in its metadata); log models with `run_study.py best`")
    return Predictor(model, list(meta["class_names"]), int(meta["image_size"]),
                     float(meta["crop_fraction"]), device, ref, meta.get("model_config"))


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


# ----------------------------------------------------------------------------- scoring


def score(probs: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
    """Probability metrics (see :mod:`study.metrics`), cross-entropy ``loss`` and ``confusion``."""
    from sklearn.metrics import log_loss

    metrics = classification_metrics(probs, labels, class_names)
    metrics["loss"] = float(log_loss(labels, np.clip(probs, 1e-7, 1), labels=range(len(class_names))))
    metrics["confusion"] = confusion(probs, labels, len(class_names)).tolist()
    return metrics


def evaluate_split(predictor: Predictor, images: np.ndarray, labels: np.ndarray, out: Path,
                   seed: int = 0, prefix: str = "", title: str = "") -> dict:
    """Metrics, rotation robustness and ``<prefix>roc.png`` / ``<prefix>confusion.png`` in ``out``."""
    from study import report_plots
    from study.robustness import rotation_robustness

    probs = predictor.predict(images)
    metrics = score(probs, labels, predictor.class_names)
    metrics.update(rotation_robustness(predictor, images, labels, seed=seed))
    label = title or predictor.source
    report_plots.plot_roc(probs, labels, predictor.class_names, out / f"{prefix}roc.png", f"ROC: {label}")
    report_plots.plot_confusion(np.array(metrics["confusion"]), predictor.class_names,
                                out / f"{prefix}confusion.png", f"confusion: {label}")
    metrics["n_images"] = int(len(labels))
    return metrics


def check_classes(predictor: Predictor, dataset) -> None:
    if list(dataset.class_names) != list(predictor.class_names):
        raise UsageError(f"dataset {dataset.path} has classes {list(dataset.class_names)} but model "
                         f"{predictor.source} predicts {predictor.class_names}; evaluate on a dataset "
                         "with the model's classes")


def evaluate_dataset(predictor: Predictor, data: str | Path, split: str, out: Path, seed: int = 0) -> dict:
    """Score ``predictor`` on one split of the dataset at ``data``; plots and metrics.json in ``out``."""
    from common.atomic import atomic_dir
    from data_io import open_dataset

    dataset = open_dataset(data)
    check_classes(predictor, dataset)
    images, labels = dataset.arrays(split)
    if len(labels) == 0:
        raise UsageError(f"dataset {data}: split {split!r} is empty; choose another --split")
    with atomic_dir(Path(out), overwrite=True) as tmp:
        metrics = evaluate_split(predictor, images, labels, tmp, seed=seed,
                                 title=f"{Path(predictor.source).name} on {Path(str(data)).name}/{split}")
        result = {"model": predictor.source, "data": str(data), "split": split,
                  "class_names": predictor.class_names, **metrics,
                  "plots": [str(Path(out) / p) for p in PLOTS]}
        (tmp / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


SUMMARY_KEYS = ("auc_micro", "auc_macro", "acc", "loss", "rot_auc_micro", "rot_acc",
                "rot_prob_shift_mean", "rot_prob_shift_max", "rot_pred_change")


def summary_table(metrics: dict, control: dict | None = None) -> str:
    """A Markdown table of the headline numbers (per-class AUCs included), optionally vs a control."""
    from study.leaderboard import markdown
    import pandas as pd

    keys = [k for k in metrics if k.startswith("auc_") and k not in SUMMARY_KEYS]
    rows = [k for k in (*SUMMARY_KEYS[:2], *keys, *SUMMARY_KEYS[2:]) if k in metrics]
    table = {"metric": rows, "model": [float(metrics[k]) for k in rows]}
    if control:
        table["trivial control"] = [float(control.get(k, float("nan"))) for k in rows]
    return markdown(pd.DataFrame(table))
