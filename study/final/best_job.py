"""The rerun job: retrain the best trial, score it once on test, log everything to one MLflow run.

The MLflow run lives in the study's experiment with tags ``role=rerun``, ``study=<name>``,
``study_run_id=<parent run>`` and ``source_run_id=<best trial's run>``. It deliberately has no
``mlflow.parentRunId``: the study's leaderboard counts every child of the parent run as a trial.

Written to ``--out`` (default ``runs/<study>.best``) and to the run under ``report/``:

- ``metrics.json``: test metrics (ROC AUC micro / per class / macro, accuracy, loss, confusion
  matrix), rotation robustness, the trivial-group control's metrics, the reproducibility check;
- ``roc.png``, ``confusion.png`` (winner), ``control_roc.png``, ``control_confusion.png``,
  ``feature_orbits.png`` (invariant features of test images rotated through 360 degrees);
- ``history.csv`` (per-epoch metrics), ``config.yaml`` (the study config);
- ``model_weights.pt`` (state dict + ModelConfig, loads with ``weights_only=True``),
  ``lens_classifier.pt2`` (torch.export: raw image -> probabilities), ``model_card.json``;
  the weights file, the card and the MLflow model metadata record the training data's domain
  (raw image shape, pixel scale, field of view, preset or source; :mod:`data_io.domain`), which
  ``evaluate`` checks datasets against.

With ``--data`` (another dataset than the study tuned on) the rerun compares the two domains
first and prints one ``warning:`` line per difference: the configuration was chosen on the
study's data. ``metrics.json`` keeps the comparison under ``domain``.

The plain-PyTorch network is also logged with ``mlflow.pytorch.log_model`` (pt2 format) under
``model`` and registered as the study's name with the alias ``best``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from study.final.best import (RerunOptions, StudyRecord, config_yaml, control_spec, load_splits,
                        rerun_spec, study_data_domain, trial_metric_at)

ORBIT_IMAGES = 3


def run_best(record: StudyRecord, options: RerunOptions) -> dict:
    """Retrain, evaluate, export and log; returns the summary written to ``metrics.json``."""
    import mlflow
    import torch

    from common.atomic import atomic_dir

    spec = rerun_spec(record, options)
    data_path = options.data or record.config.data.path
    dataset, train, val, test = load_splits(data_path, options.train_on_train_val)
    domain = check_rerun_domain(record, dataset, data_path, other_data=bool(options.data))
    if options.threads:
        torch.set_num_threads(int(options.threads))
    out = Path(options.out or Path("runs") / f"{record.name}.best")
    mlflow.set_tracking_uri(record.tracking_uri)
    tags = {"role": "rerun", "study": record.name, "study_run_id": record.parent_run_id,
            "source_run_id": record.trial["run_id"], "source_trial": str(record.trial["trial"])}
    print(f"Best trial of {record.name!r}: {record.trial['trial']} ({record.config.tune.metric} "
          f"{record.trial['best']:.4f} after {record.trial['epochs']} epochs); retraining for "
          f"{spec.max_epochs} epochs on {'train+val' if options.train_on_train_val else 'train'} of {data_path}")
    with atomic_dir(out, overwrite=True) as folder, \
            mlflow.start_run(experiment_id=record.experiment_id, run_name=f"best {spec.label()}", tags=tags) as run:
        mlflow.log_params({**spec.to_dict(), "data": str(data_path), "epochs": spec.max_epochs,
                           "train_on_train_val": options.train_on_train_val})
        summary = {"study": record.name, "run_id": run.info.run_id, "source_run_id": record.trial["run_id"],
                   "spec": spec.to_dict(), "data": str(data_path), "class_names": list(dataset.class_names),
                   "domain": domain}
        trainer, history = train_logged(spec, dataset.class_names, train, val, options.device, log=True)
        summary["reproducibility"] = reproducibility(record, history, options)
        _evaluate_all(summary, trainer, spec, record, dataset, train, val, test, options, folder)
        _save_model(summary, trainer, record, dataset, test, folder)
        (folder / "history.csv").write_text(_csv(history))
        (folder / "config.yaml").write_text(config_yaml(record.config))
        (folder / "metrics.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
        mlflow.log_metrics(flat_metrics(summary))
        mlflow.log_artifacts(str(folder), artifact_path="report")
    summary["out"] = str(out)
    return summary


def check_rerun_domain(record: StudyRecord, dataset, data_path, other_data: bool) -> dict:
    """The training data's domain; with ``--data``, its differences from the study's data,
    one ``warning:`` line each on stderr. Returned for ``metrics.json``."""
    import sys

    from data_io.domain import compare, dataset_domain, warning_line

    data = dataset_domain(dataset.metadata)
    result = {"data": data.to_dict()}
    study = study_data_domain(record) if other_data else None
    if study is None:
        return result
    mismatches, not_compared = compare(study, data)
    fix = ("its best configuration was chosen on the study's data: drop --data to retrain on that, "
           "or tune a study on this dataset")
    for m in mismatches:
        print(warning_line(m, f"--data {data_path}", f"study {record.name!r} tuned on", fix),
              file=sys.stderr, flush=True)
    return {**result, "study_data": study.to_dict(), "mismatches": [m.to_dict() for m in mismatches],
            "not_compared": not_compared}


def train_logged(spec, class_names, train, val, device, log: bool):
    """Train ``spec`` from scratch with the study's engine; per-epoch metrics to the active run."""
    import mlflow

    from study.engine.trainer import Trainer, fit

    trainer = Trainer(spec, class_names, device=device)

    def on_epoch(record: dict) -> None:
        numbers = {k: float(v) for k, v in record.items() if isinstance(v, (int, float)) and not math.isnan(v)}
        print(f"  {spec.model} epoch {record['epoch']}/{spec.max_epochs}: train_loss "
              f"{record['train_loss']:.4f}  val_auc_micro {record['val_auc_micro']:.4f}", flush=True)
        if log:
            mlflow.log_metrics(numbers, step=int(record["epoch"]))

    return trainer, fit(trainer, train, val, until_epoch=spec.max_epochs, on_epoch=on_epoch)


def reproducibility(record: StudyRecord, history: list[dict], options: RerunOptions) -> dict:
    """The rerun's validation metric at the trial's epoch count, beside the trial's own."""
    metric, epochs = record.config.tune.metric, int(record.trial["epochs"])
    trial_value = trial_metric_at(record.client, record.trial["run_id"], metric, epochs)
    rerun_value = next((h[metric] for h in history if h["epoch"] == epochs), math.nan)
    check = {"metric": metric, "epoch": epochs, "trial": trial_value, "rerun": rerun_value,
             "difference": rerun_value - trial_value}
    if options.train_on_train_val:
        check["note"] = "trained on train+val: the validation metric is not held out, not comparable"
    elif math.isnan(rerun_value):
        check["note"] = f"the rerun stopped before epoch {epochs}"
    print(f"Reproducibility: {metric} at epoch {epochs}: rerun {rerun_value:.6f}, trial {trial_value:.6f} "
          f"(difference {check['difference']:+.2e}){'; ' + check['note'] if 'note' in check else ''}")
    return check


def _evaluate_all(summary, trainer, spec, record, dataset, train, val, test, options, folder) -> None:
    from study.final import report_plots
    from study.engine.predict import Predictor
    from study.final.evaluate import evaluate_split
    from study.final.robustness import feature_orbits, orbit_variation

    winner = Predictor.from_trainer(trainer)
    summary["test"] = evaluate_split(winner, test.images, test.labels, folder, seed=spec.seed,
                                     title=f"{spec.label()} (test)")
    orbit_idx = [int(np.flatnonzero(test.labels == c)[0]) for c in np.unique(test.labels)][:ORBIT_IMAGES]
    angles, orbits = feature_orbits(winner, test.images[orbit_idx])
    pictures = {f"{spec.model} (best trial)": orbits}
    summary["feature_variation"] = {spec.model: orbit_variation(orbits)}
    if options.control and spec.model != "trivial":
        cspec = control_spec(spec, record.config)
        print(f"Control: {cspec.label()} (trivial group, same settings; "
              f"{cspec.max_epochs} epochs) for the rotation-robustness comparison")
        control, _ = train_logged(cspec, dataset.class_names, train, val, options.device, log=False)
        cpred = Predictor.from_trainer(control)
        summary["control"] = {"spec": cspec.to_dict(), **evaluate_split(
            cpred, test.images, test.labels, folder, seed=spec.seed, prefix="control_",
            title=f"{cspec.label()} (test)")}
        _, corbits = feature_orbits(cpred, test.images[orbit_idx])
        pictures["trivial (control)"] = corbits
        summary["feature_variation"]["trivial"] = orbit_variation(corbits)
    report_plots.plot_feature_orbits(angles, pictures, folder / "feature_orbits.png")


def model_card(predictor, record: StudyRecord) -> dict:
    """``model_card.json``, also the MLflow model's metadata: classes, preprocessing, training
    data domain (``raw_image_shape`` is kept at the top level for older readers)."""
    domain = predictor.domain.to_dict()
    return {"class_names": predictor.class_names, "image_size": predictor.image_size,
            "crop_fraction": predictor.crop_fraction, "raw_image_shape": domain["raw_image_shape"],
            "domain": domain, "model_config": predictor.model_config, "study": record.name,
            "source_run_id": record.trial["run_id"]}


def _save_model(summary, trainer, record, dataset, test, folder) -> None:
    import mlflow
    import mlflow.pytorch

    from data_io.domain import dataset_domain
    from lensnets import export_model
    from study.engine.predict import Predictor
    from study.final.weights import save_weights
    from study.final.export import export_classifier

    predictor = Predictor.from_trainer(trainer, dataset_domain(dataset.metadata))
    save_weights(predictor, folder / "model_weights.pt")
    export_classifier(predictor, dataset.image_shape, folder / "lens_classifier.pt2")
    card = model_card(predictor, record)
    (folder / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    network = export_model(trainer.model).cpu().eval()
    example = predictor.tensors(test.images[:2]).numpy()
    info = mlflow.pytorch.log_model(network, name="model", input_example=example,
                                    registered_model_name=record.name, metadata=card)
    version = info.registered_model_version
    record.client.set_registered_model_alias(record.name, "best", version)
    summary["model"] = {"registered": f"models:/{record.name}@best", "version": int(version),
                        "run_model": f"runs:/{summary['run_id']}/model"}


def flat_metrics(summary: dict) -> dict[str, float]:
    """Numbers worth a metric: ``test_*``, ``control_test_*``, ``feature_variation_*``, ``repro_*``."""
    out = {}
    for prefix, block in (("test_", summary.get("test", {})), ("control_test_", summary.get("control", {}))):
        out.update({f"{prefix}{k}": float(v) for k, v in block.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)})
    out.update({f"feature_variation_{k}": v for k, v in summary.get("feature_variation", {}).items()})
    repro = summary.get("reproducibility", {})
    for key in ("trial", "rerun"):
        if not math.isnan(repro.get(key, math.nan)):
            out[f"repro_{key}_{repro['metric']}"] = float(repro[key])
    return out


def _csv(history: list[dict]) -> str:
    keys = sorted({k for h in history for k in h})
    rows = [",".join(keys)] + [",".join(str(h.get(k, "")) for k in keys) for h in history]
    return "\n".join(rows) + "\n"
