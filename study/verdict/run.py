"""The verdict: which symmetry group wins at equal budget, and by more than noise or not.

A study's trials stop at different ASHA rungs, so their scores do not compare with each other.
The verdict takes each group's best configuration (the first of the group in the matched-budget
ranking, :func:`study.tracking.leaderboard.matched_order`), retrains it from scratch for the same number
of epochs with K seeds, scores every retrain once on the held-out test split, and compares each
group with the trivial-group control seed by seed (:mod:`study.verdict.stats`). A study that did
not search the trivial group gets a control with the overall winner's settings.

Retrains are Ray tasks (one per group and seed, each with the study's per-trial CPUs and GPUs)
on the cluster of ``--address`` or on a local Ray instance; they reuse the trials' engine
(:func:`study.engine.fit`). Only the driver writes to MLflow: a ``verdict`` run in the study's
experiment (tags ``role=verdict``, ``study``, ``study_run_id``) with one child run per retrain,
logged as soon as the retrain finishes. Tables and the plot are :mod:`study.verdict.report`'s.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np

from common.errors import UsageError
from study.final.best import StudyRecord, control_spec
from study.engine.spec import RunSpec

CONTROL = "trivial"


@dataclass
class Contender:
    """One group's configuration in the verdict, and where it came from."""

    spec: RunSpec          # seed and epochs are set per retrain
    source: str            # the trial it was taken from
    reached: str           # e.g. "completed at epoch 8", "pruned at epoch 2"

    @property
    def group(self) -> str:
        return self.spec.model


@dataclass
class VerdictOptions:
    seeds: int = 3
    epochs: int | None = None     # default: the study's train.max_epochs
    address: str | None = None    # Ray cluster; default: a local instance
    out: str | None = None        # default: runs/<study>.verdict
    data: str | None = None       # default: the study's data.path


def study_trials(record: StudyRecord):
    """The study's leaderboard (with rung columns), read back from MLflow."""
    from study.tracking.leaderboard import study_trials as read_trials

    return read_trials(record.client, record.experiment_id, record.parent_run_id, record.config)


def contenders(trials, record: StudyRecord, epochs: int) -> list[Contender]:
    """Each group's best finished configuration, plus the trivial control if the study had none."""
    from study.tracking.leaderboard import FINISHED, by_group, matched_order
    from study.search.space import run_spec

    mode = record.config.tune.mode
    finished = trials[trials.status.isin(FINISHED)].dropna(subset=["best"])
    picks = []
    for row in by_group(finished, mode).itertuples(index=False):
        top = matched_order(finished[finished.model == row.model], mode).iloc[0].to_dict()
        sampled = {k: top[k] for k in ("model", "width", "lr", "weight_decay", "batch_size")
                   if not _missing(top.get(k))}
        spec = dataclasses.replace(run_spec(sampled, record.config), max_epochs=epochs)
        picks.append(Contender(spec, str(top["trial"]), str(row.reached)))
    if not picks:
        raise UsageError(f"study {record.name!r} has no finished trial to retrain; let it finish first")
    if CONTROL not in {c.group for c in picks}:
        winner = picks[0]
        picks.append(Contender(control_spec(winner.spec, record.config), winner.source,
                               f"control: settings of {winner.source}"))
    return picks


def seeded(spec: RunSpec, base_seed: int, k: int) -> RunSpec:
    """Retrain ``k`` of a contender: seed ``base_seed + k`` (seed 0 repeats the trial's own seed)."""
    return dataclasses.replace(spec, seed=int(base_seed) + int(k))


# ----------------------------------------------------------------------------- one retrain


def retrain(spec: dict, data: dict, threads: int) -> dict:
    """Train ``spec`` from scratch on train, score it on test: the body of one Ray task.

    Returns the spec, per-epoch history, test metrics (with rotation robustness), the test
    probabilities ``[N, C]`` (float32, for the paired bootstrap), node and seconds taken.
    """
    import torch

    from study.engine.spec import Split
    from study.engine.trainer import Trainer, fit
    from study.engine.predict import Predictor
    from study.final.evaluate import score
    from study.final.robustness import rotation_robustness

    start = time.perf_counter()
    torch.set_num_threads(max(1, int(threads)))
    run = RunSpec.from_dict(spec)
    trainer = Trainer(run, data["class_names"])
    history = fit(trainer, Split(data["train_images"], data["train_labels"]),
                  Split(data["val_images"], data["val_labels"]), until_epoch=run.max_epochs)
    predictor = Predictor.from_trainer(trainer)
    images, labels = data["test_images"], data["test_labels"]
    probs = predictor.predict(images)
    test = score(probs, labels, predictor.class_names)
    test.update(rotation_robustness(predictor, images, labels, seed=run.seed))
    return {"spec": run.to_dict(), "history": history, "test": test,
            "probs": probs.astype(np.float32), "node": _node_id(),
            "seconds": time.perf_counter() - start}


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    except Exception:   # outside a Ray worker
        return ""


# ----------------------------------------------------------------------------- the whole verdict


def run_verdict(record: StudyRecord, options: VerdictOptions) -> dict:
    """Retrain every contender K times on Ray, log to MLflow, write the report; returns the summary."""
    import ray

    from study.verdict import report as verdict_report
    from study.final.best import load_splits
    from study.search.ray_start import start_ray

    config = record.config
    epochs = int(options.epochs or config.train.max_epochs)
    if options.seeds < 1 or epochs < 1:
        raise UsageError(f"--seeds {options.seeds} and --epochs {epochs} must be >= 1")
    from study.tracking.leaderboard import unequal_budgets

    trials = study_trials(record)
    picks = contenders(trials, record, epochs)
    budget_warning = unequal_budgets(trials, [c.group for c in picks],
                                    per_group_stopping=config.search.allocation == "equal")
    if budget_warning:
        print(f"warning: {budget_warning}")
    data_path = options.data or config.data.path
    dataset, train, val, test = load_splits(data_path, train_on_train_val=False)
    if list(dataset.class_names) != _study_classes(record, dataset):
        raise UsageError(f"dataset {data_path} has other classes than study {record.name!r}; pass its own data")
    jobs = [(c, seeded(c.spec, config.seed, k)) for k in range(options.seeds) for c in picks]
    print(f"Verdict of {record.name!r}: {len(picks)} groups x {options.seeds} seeds = {len(jobs)} "
          f"retrains of {epochs} epochs on {data_path} (test split: {len(test)} images)")
    start_ray(options.address)
    arrays = ray.put({"class_names": list(dataset.class_names),
                      **_arrays("train", train), **_arrays("val", val), **_arrays("test", test)})
    task = ray.remote(retrain).options(num_cpus=config.tune.cpus_per_trial,
                                       num_gpus=config.tune.gpus_per_trial,
                                       max_retries=config.tune.max_failures)
    threads = max(1, int(config.tune.cpus_per_trial))
    log = verdict_report.VerdictLog(record, options.seeds, epochs, data_path)
    try:
        pending = {task.remote(spec.to_dict(), arrays, threads): contender for contender, spec in jobs}
        results = _collect(pending, log, len(jobs))
    except BaseException:
        log.close("FAILED")
        raise
    summary = verdict_report.write_report(record, picks, results, log, options, dataset.class_names,
                                          test.labels, budget_warning)
    log.close("FINISHED")
    return summary


def _collect(pending: dict, log, total: int) -> list[dict]:
    """Wait for the retrains in completion order; log each one as it arrives."""
    import ray

    results, start = [], time.perf_counter()
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        contender = pending.pop(done[0])
        result = {**ray.get(done[0]), "source": contender.source, "reached": contender.reached}
        log.retrain(result)
        results.append(result)
        spec, test = result["spec"], result["test"]
        print(f"  {spec['model']} seed {spec['seed']}: test auc_micro {test['auc_micro']:.4f}, "
              f"rotated {test['rot_auc_micro']:.4f}  ({len(results)}/{total} done, "
              f"{time.perf_counter() - start:.0f} s)", flush=True)
    return results


def _arrays(name: str, split) -> dict:
    return {f"{name}_images": split.images, f"{name}_labels": split.labels}


def _study_classes(record: StudyRecord, dataset) -> list[str]:
    """The class names the study trained on (from its dataset params), else the dataset's own."""
    run = record.client.get_run(record.parent_run_id)
    names = run.data.params.get("dataset.class_names")
    if not names:
        return list(dataset.class_names)
    import ast

    try:
        return list(ast.literal_eval(names))
    except (ValueError, SyntaxError):
        return list(dataset.class_names)


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))
