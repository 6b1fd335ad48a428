"""Score a trained classifier on a dataset: metrics, rotation robustness, ROC and confusion plots,
after the domain check (:mod:`study.final.domain_check`); models load through
:mod:`study.final.weights`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from common.errors import UsageError
from data_io.domain import dataset_domain
from study.engine.metrics import classification_metrics, confusion, cross_entropy
from study.engine.predict import Predictor
from study.final.domain_check import DomainCheck

PLOTS = ("roc.png", "confusion.png")



def score(probs: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
    """Probability metrics (see :mod:`study.engine.metrics`), cross-entropy ``loss`` and ``confusion``."""
    metrics = classification_metrics(probs, labels, class_names)
    metrics["loss"] = cross_entropy(probs, labels)
    metrics["confusion"] = confusion(probs, labels, len(class_names)).tolist()
    return metrics


def evaluate_split(predictor: Predictor, images: np.ndarray, labels: np.ndarray, out: Path,
                   seed: int = 0, prefix: str = "", title: str = "") -> dict:
    """Metrics, rotation robustness and ``<prefix>roc.png`` / ``<prefix>confusion.png`` in ``out``."""
    from study.final import report_plots
    from study.final.robustness import rotation_robustness

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


SUMMARY_KEYS = ("auc_micro", "auc_macro", "acc", "loss", "rot_auc_micro", "rot_acc",
                "rot_prob_shift_mean", "rot_prob_shift_max", "rot_pred_change")


def summary_table(metrics: dict, control: dict | None = None) -> str:
    """A Markdown table of the headline numbers (per-class AUCs included), optionally vs a control."""
    from study.tracking.leaderboard import markdown
    import pandas as pd

    keys = [k for k in metrics if k.startswith("auc_") and k not in SUMMARY_KEYS]
    rows = [k for k in (*SUMMARY_KEYS[:2], *keys, *SUMMARY_KEYS[2:]) if k in metrics]
    table = {"metric": rows, "model": [float(metrics[k]) for k in rows]}
    if control:
        table["trivial control"] = [float(control.get(k, float("nan"))) for k in rows]
    return markdown(pd.DataFrame(table))
