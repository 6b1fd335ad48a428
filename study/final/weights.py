"""Saving and loading trained classifiers. Models come from three places (:func:`load_model`):

- ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` - the MLflow model registry;
- ``runs:/RUN_ID/model`` - a model logged to a run;
- a file: the project's weights format (``model_weights.pt`` written by ``best``: a state dict
  plus the ``ModelConfig``, class names and preprocessing as plain data) or a training
  checkpoint of :mod:`study.engine.trainer`.

What is unpickled: files are read with ``torch.load(weights_only=True)`` (tensors and plain
containers only, never arbitrary objects). MLflow models logged by ``best`` are torch.export
(``pt2``) graphs; ``mlflow.pytorch.load_model`` checks the archive holds no pickle before loading
it. A pickle-format MLflow model (logged by other code) would unpickle arbitrary Python objects:
load those only from a registry you trust.
"""
from __future__ import annotations

from pathlib import Path

import torch

from common.errors import UsageError
from data_io.domain import Domain
from study.engine.checkpoint import is_checkpoint, read_safely
from study.engine.predict import Predictor

WEIGHTS_FORMAT = "lens-model-weights"
WEIGHTS_VERSION = 1



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
    from study.engine.trainer import pick_device

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
        state = read_safely(path)
    except Exception as err:  # not a torch file, truncated, or holding non-weight objects
        raise UsageError(f"model file {path} is not a readable weights file ({type(err).__name__}); "
                         "pass a model_weights.pt written by `best` or a training checkpoint")
    if isinstance(state, dict) and state.get("format") == WEIGHTS_FORMAT:
        config, names = state["model_config"], state["class_names"]
        size, crop = state["preprocess"]["image_size"], state["preprocess"]["crop_fraction"]
        weights, domain = state["state_dict"], Domain.from_dict(state.get("domain"))
    elif is_checkpoint(state):
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

    from study.tracking.mlflow_store import connect

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
