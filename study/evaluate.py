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

Domain check: every model written by ``best`` records its training data's domain (raw image
shape, pixel scale, field of view, preset or source; :mod:`data_io.domain`) in
``model_weights.pt`` and in its MLflow metadata. :func:`evaluate_dataset` compares it with the
dataset's and prints one ``warning:`` line per difference on stderr; with ``match_field`` it
resamples the images to the model's field of view and raw shape first. Models without a record
(weights files and checkpoints written before it) load as before; the check then prints one
``note:`` line saying what it could not compare. The outcome goes into ``metrics.json`` under
``domain``.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from common.errors import UsageError
from data_io.domain import (Domain, Mismatch, compare, dataset_domain, format_field, format_shape,
                            resample_to_field, warning_line)
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
    def from_trainer(cls, trainer, domain: Domain | None = None) -> "Predictor":
        """The trainer's model; ``domain``: the domain of the data it was trained on."""
        s = trainer.spec
        return cls(trainer.model, list(trainer.class_names), s.image_size, s.crop_fraction,
                   trainer.device, f"trained {s.label()}", trainer.model.config.to_dict(), domain)


def _eval_mode(model) -> None:
    try:
        model.eval()
    except (NotImplementedError, RuntimeError):  # torch.export modules are frozen in eval mode
        pass


# ----------------------------------------------------------------------------- saving and loading


def save_weights(predictor: Predictor, path: Path) -> Path:
    """The safe file format: state dict + ModelConfig + class names + preprocessing + training
    data domain (``None`` if unknown), all plain data."""
    from common.atomic import atomic_file

    state = {
        "format": WEIGHTS_FORMAT, "version": WEIGHTS_VERSION,
        "model_config": dict(predictor.model_config or predictor.model.config.to_dict()),
        "class_names": list(predictor.class_names),
        "preprocess": {"image_size": predictor.image_size, "crop_fraction": predictor.crop_fraction},
        "domain": predictor.domain.to_dict() if predictor.domain else None,
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
        weights, domain = state["state_dict"], Domain.from_dict(state.get("domain"))
    elif isinstance(state, dict) and {"spec", "model", "model_config", "class_names"} <= set(state):
        config, names, weights = state["model_config"], state["class_names"], state["model"]
        size, crop = state["spec"]["image_size"], state["spec"]["crop_fraction"]
        domain = None
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
                     str(path), dict(config), domain)


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
                     float(meta["crop_fraction"]), device, ref, meta.get("model_config"),
                     _metadata_domain(meta))


def _metadata_domain(meta: dict) -> Domain | None:
    """The training domain in a model's MLflow metadata; older models record only the shape."""
    if meta.get("domain"):
        return Domain.from_dict(meta["domain"])
    shape = meta.get("raw_image_shape")
    return Domain(tuple(int(n) for n in shape)) if shape else None


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


def evaluate_dataset(predictor: Predictor, data: str | Path, split: str, out: Path, seed: int = 0,
                     match_field: bool = False) -> dict:
    """Score ``predictor`` on one split of the dataset at ``data``; plots and metrics.json in ``out``.

    The dataset's domain is checked against the model's first (warnings on stderr); with
    ``match_field`` the images are resampled to the model's field of view and raw shape.
    """
    from common.atomic import atomic_dir
    from data_io import open_dataset

    dataset = open_dataset(data)
    check_classes(predictor, dataset)
    check = DomainCheck.of(predictor, dataset_domain(dataset.metadata))
    if match_field:
        check.require_field_match(predictor.source, data)
    images, labels = dataset.arrays(split)
    if len(labels) == 0:
        raise UsageError(f"dataset {data}: split {split!r} is empty; choose another --split")
    resample = match_field and bool(check.geometric)
    for line in check.messages(predictor.source, data, match_field):
        print(line, file=sys.stderr, flush=True)
    if resample:
        images = check.match_field(images)
    with atomic_dir(Path(out), overwrite=True) as tmp:
        metrics = evaluate_split(predictor, images, labels, tmp, seed=seed,
                                 title=f"{Path(predictor.source).name} on {Path(str(data)).name}/{split}")
        result = {"model": predictor.source, "data": str(data), "split": split,
                  "class_names": predictor.class_names, **metrics,
                  "domain": check.record(match_field, resample),
                  "plots": [str(Path(out) / p) for p in PLOTS]}
        (tmp / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


# ----------------------------------------------------------------------------- domain check


@dataclass
class DomainCheck:
    """A model's training-data domain against a dataset's (see :mod:`data_io.domain`)."""

    model: Domain | None
    data: Domain
    mismatches: list[Mismatch]
    not_compared: list[str]

    @classmethod
    def of(cls, predictor: Predictor, data: Domain) -> "DomainCheck":
        if predictor.domain is None:
            return cls(None, data, [], ["raw image shape", "pixel scale", "field of view", "source"])
        return cls(predictor.domain, data, *compare(predictor.domain, data))

    @property
    def status(self) -> str:
        """``mismatch``; ``match``; ``partial`` (no difference found, something not compared);
        ``unknown`` (the model records no training-data domain)."""
        if self.mismatches:
            return "mismatch"
        if self.model is None:
            return "unknown"
        return "partial" if self.not_compared else "match"

    @property
    def geometric(self) -> list[Mismatch]:
        """The differences that resampling fixes: raw image shape, pixel scale, field of view."""
        return [m for m in self.mismatches if m.geometric]

    def require_field_match(self, model_name: str, data) -> None:
        """``UsageError`` unless both pixel scales (and the model's raw shape) are known."""
        if self.model is None or self.model.pixel_scale is None or self.model.raw_image_shape is None:
            raise UsageError(f"--match-field: model {model_name} records no pixel scale for its "
                             "training data (written before domain records); rerun `run_study.py best` "
                             "to write a model that has one, or drop --match-field")
        if self.data.pixel_scale is None:
            raise UsageError(f"--match-field: dataset {data} records no pixel scale; re-ingest it with "
                             f"`run_study.py ingest SRC --out {data} --overwrite --pixel-scale ARCSEC` "
                             "(arcsec per pixel), or drop --match-field")

    def match_field(self, images: np.ndarray) -> np.ndarray:
        """``images`` resampled to the model's field of view and raw shape."""
        return resample_to_field(images, self.data.pixel_scale, self.model.raw_image_shape,
                                 self.model.pixel_scale)

    def messages(self, model_name: str, data, match_field: bool = False) -> list[str]:
        """One ``warning:`` line per difference (naming both values and a fix), ``note:`` lines
        for what was resampled and for what could not be compared."""
        lines = []
        if match_field and self.geometric:
            lines.append(f"note: --match-field: resampled the images from {self.data.describe()} "
                         f"to the model's {self.model.describe()}")
        elif match_field:
            lines.append("note: --match-field: the images already have the model's raw shape and "
                         "field of view; nothing resampled")
        for m in self.mismatches:
            if not (match_field and m.geometric):
                lines.append(warning_line(m, f"data {data}", f"model {model_name} was trained on",
                                          self._fix(m)))
        if self.not_compared:
            lines.append(self._unknown_note(model_name, data))
        return lines

    def _fix(self, mismatch: Mismatch) -> str:
        model = self.model
        simulate = f"simulate the data with --preset {model.preset}" if model.preset else ""
        if mismatch.what == "preset":
            return f"{simulate} to score the model in its own domain (another preset measures transfer)"
        if mismatch.what == "source":
            return ("the score measures transfer from the model's training data; train on this source "
                    "for an in-domain score")
        if model.pixel_scale is not None and self.data.pixel_scale is not None:
            fix = (f"pass --match-field to resample the images to the model's "
                   f"{format_field(model.field_of_view)} field at {format_shape(model.raw_image_shape)} px")
        elif self.data.pixel_scale is None:
            fix = "re-ingest the data with --pixel-scale ARCSEC, then --match-field can resample it"
        else:
            fix = f"score the model on {format_shape(model.raw_image_shape)} images (it records no pixel scale to resample to)"
        return f"{fix}, or {simulate}" if simulate else fix

    def _unknown_note(self, model_name: str, data) -> str:
        if self.model is None:
            return (f"note: model {model_name} records no training-data domain (a weights file or "
                    "checkpoint written before domain records): raw image shape, pixel scale and field "
                    "of view are not checked; rerun `run_study.py best` for a model that records them")
        sides = [f"{side} records no {' or '.join(missing)}"
                 for side, domain in (("the model", self.model), ("the data", self.data))
                 if (missing := _unrecorded(domain))]
        hint = "; re-ingest the data with --pixel-scale ARCSEC" if self.data.pixel_scale is None else ""
        return f"note: not compared: {', '.join(self.not_compared)} ({', '.join(sides)}){hint}"

    def record(self, match_field: bool, resampled: bool) -> dict:
        """What ``metrics.json`` keeps: both domains, the differences, what was done about them."""
        if resampled:
            done = {"applied": True, "from": self.data.to_dict(), "to": self.model.to_dict()}
        else:
            done = {"applied": False, "reason": "already the model's field and shape" if match_field
                    else "not requested (--match-field)"}
        return {"status": self.status, "model": self.model.to_dict() if self.model else None,
                "data": self.data.to_dict(), "mismatches": [m.to_dict() for m in self.mismatches],
                "not_compared": list(self.not_compared), "match_field": done}


def _unrecorded(domain: Domain) -> list[str]:
    return [what for what, value in (("raw image shape", domain.raw_image_shape),
                                     ("pixel scale", domain.pixel_scale), ("source", domain.source))
            if value is None]


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
