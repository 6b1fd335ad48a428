#!/usr/bin/env python
"""Efficiency of the search: trial-epochs each strategy needs to get within 0.01 of the best.

A tabular HPO benchmark (as in HPOBench / LCBench): real learning curves are recorded once on a
grid of configurations of the laptop study (``configs/local.yaml``: small64 at 33 px, 8 epochs,
seed 0), then the strategies are replayed through the real Ray Tune schedulers and searchers with
a trainable that looks the curve of the nearest recorded configuration up (same model and batch
size, nearest width, nearest log learning rate and log weight decay) and reports it epoch by
epoch - no training, so a replay costs seconds.

    python benchmarks/study_efficiency.py record [--workers 2]   # ~35 min on 2 cores, resumable
    python benchmarks/study_efficiency.py replay [--reps 20]     # the four strategies, ~minutes
    python benchmarks/study_efficiency.py record --landscape model_i   # ~2 h on 2 cores, resumable

Two landscapes (``--landscape``): ``local`` (above) and ``model_i``: the Model I laptop config
(``configs/model-i-laptop.yaml``: DeepLense Model I physics at 65 px, where the curves stay near
chance for the first epochs and the groups differ), every group of it plus ResNet-18, 12 epochs,
two seeds per configuration (``seed`` column), on a fractional grid sized to record in about two
hours: width 1/16 (the config's only width), lr 3e-4 / 1e-3 / 3e-3, and (weight decay, batch size)
(1e-5, 32) and (3e-4, 64). Seed 0 of every configuration records first. The replay reads a
configuration's curve as the mean over its recorded seeds.

Strategies (``--reps`` seeds each; seed ``r`` seeds the sampler):

- ``ASHA+TPE``: the study's own: ``PruningOptunaSearch`` (TPE, seeded; stopped trials told as
  PRUNED) and ASHA with the config's grace period and reduction factor (the rules of
  ``PersistentASHA``, without its state file, which only matters across driver restarts);
- ``ASHA+random``: the same ASHA, Optuna's ``RandomSampler``;
- ``FIFO+TPE``, ``FIFO+random``: every trial runs all ``max_epochs``.

One trial at a time (``max_concurrent_trials=1``) so the order of results, hence the count, is
deterministic given the seed. The target is the best validation AUC anywhere in the table minus
0.01; a run stops when a reported epoch reaches it, or after ``--max-trials`` trials (then it
counts as not reached, and the median is over all reps with unreached ones ranked last).
"""
from __future__ import annotations

import argparse
import csv
import itertools
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
CURVES = ROOT / "benchmarks" / "data" / "curves_local.csv"
CONFIG = ROOT / "configs" / "local.yaml"
LANDSCAPES = {   # name -> (study config, its overrides for recording, curves table, seeds)
    "local": (CONFIG, [], CURVES, (0,)),
    "model_i": (ROOT / "configs" / "model-i-laptop.yaml", ["train.max_epochs=12"],
                ROOT / "benchmarks" / "data" / "curves_model_i.csv", (0, 1)),
}
MODEL_I_WD_BS = ((1e-5, 32), (3e-4, 64))   # the fractional grid's (weight decay, batch size) pairs
STRATEGIES = ("ASHA+TPE", "ASHA+random", "FIFO+TPE", "FIFO+random")
TOLERANCE = 0.01
KEY = ("model", "width", "lr", "weight_decay", "batch_size")

# The recorded grid: every model of the default search, its widths and batch sizes, and three
# learning rates spanning the search's log range. Weight decay is held at the log-midpoint of its
# range (3e-5): over 8 epochs of AdamW it moves the validation AUC less than the seed-to-seed
# spread, and a second value would double the recording. The replay maps every sampled weight
# decay to it, so the table does not resolve weight decay (TPE and random alike).
GRID_LR = (3e-4, 1e-3, 3e-3)
GRID_WD = (3e-5,)


def grid(search, landscape: str = "local") -> list[dict]:
    """The configurations to record, batch size 32 first (a partial recording covers every model)."""
    if landscape == "model_i":
        models = [*search.groups, "resnet18"]
        return [dict(model=m, width=1.0 if m == "resnet18" else float(search.widths[0]), lr=lr,
                     weight_decay=wd, batch_size=bs)
                for wd, bs in MODEL_I_WD_BS for m in models for lr in GRID_LR]
    out = []
    for bs in search.batch_sizes:
        for model in search.groups:
            widths = [1.0] if model == "resnet18" else list(search.widths)
            for width, lr, wd in itertools.product(widths, GRID_LR, GRID_WD):
                out.append(dict(model=model, width=float(width), lr=lr, weight_decay=wd, batch_size=int(bs)))
    return out


# ----------------------------------------------------------------------------- recording

def _key(row: dict) -> tuple:
    return (row["model"], float(row["width"]), float(row["lr"]), float(row["weight_decay"]),
            int(row["batch_size"]))


def read_curves(path: Path = CURVES) -> dict[tuple, list[float]]:
    """``{(model, width, lr, weight_decay, batch_size): [val_auc_micro at epoch 1, 2, ...]}``,
    the mean over the configuration's recorded seeds."""
    per_seed = read_seed_curves(path)
    curves: dict[tuple, list[list[float]]] = {}
    for (key, _seed), curve in per_seed.items():
        curves.setdefault(key, []).append(curve)
    return {k: [sum(v) / len(v) for v in zip(*c)] for k, c in curves.items()}


def read_seed_curves(path: Path) -> dict[tuple, list[float]]:
    """``{(configuration key, seed): curve}`` (a table without a ``seed`` column is seed 0)."""
    curves: dict[tuple, dict[int, float]] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            key = (_key(row), int(row.get("seed") or 0))
            curves.setdefault(key, {})[int(row["epoch"])] = float(row["val_auc_micro"])
    return {k: [v[e] for e in sorted(v)] for k, v in curves.items()}


def record_one(cfg: dict, landscape: str = "local", seed: int | None = None) -> list[dict]:
    """Train ``cfg`` for the study's ``max_epochs`` with the study's engine; one row per epoch
    (with a ``seed`` column when ``seed`` is given: the run's seed, instead of the study's)."""
    import dataclasses

    import torch

    from study.config import load_config
    from study.engine.spec import Split
    from study.engine.trainer import Trainer, fit
    from study.search.space import run_spec
    from study.search.data_preparation import ensure_dataset

    config, overrides, _, _ = LANDSCAPES[landscape]
    torch.set_num_threads(1)
    study = load_config(config, overrides)
    data = ensure_dataset(study)
    train, val = (Split(*data.arrays(s)) for s in ("train", "val"))
    spec = run_spec(cfg, study)
    if seed is not None:
        spec = dataclasses.replace(spec, seed=seed)
    trainer = Trainer(spec, list(data.class_names), device="cpu")
    start = time.perf_counter()
    history = fit(trainer, train, val, until_epoch=study.train.max_epochs)
    seconds = (time.perf_counter() - start) / len(history)
    extra = {} if seed is None else {"seed": seed}
    return [{**cfg, **extra, "epoch": r["epoch"], "val_auc_micro": round(float(r["val_auc_micro"]), 5),
             "epoch_seconds": round(seconds, 2)} for r in history]


def record(args) -> int:
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from study.config import load_config
    from study.search.data_preparation import ensure_dataset

    config, overrides, default_curves, seeds = LANDSCAPES[args.landscape]
    study = load_config(config, overrides)
    ensure_dataset(study)    # simulate once, before the workers start
    path = Path(args.curves or default_curves)
    done = set(read_seed_curves(path)) if path.exists() else set()
    with_seed = len(seeds) > 1
    todo = [(c, s) for s in seeds for c in grid(study.search, args.landscape) if (_key(c), s) not in done]
    print(f"{len(done)} runs (configuration, seed) recorded in {path}, {len(todo)} to go", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = [*KEY, *(["seed"] if with_seed else []), "epoch", "val_auc_micro", "epoch_seconds"]
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        futures = [pool.submit(record_one, c, args.landscape, s if with_seed else None) for c, s in todo]
        for n, fut in enumerate(as_completed(futures), 1):
            rows = fut.result()
            new = not path.exists()
            with open(path, "a", newline="") as fh:   # appended per configuration: resumable
                writer = csv.DictWriter(fh, fieldnames=fields)
                if new:
                    writer.writeheader()
                writer.writerows(rows)
            r = rows[-1]
            print(f"[{n}/{len(todo)}] {r['model']} w{r['width']} lr{r['lr']:.0e} wd{r['weight_decay']:.0e} "
                  f"bs{r['batch_size']} seed {r.get('seed', 0)}: best {max(x['val_auc_micro'] for x in rows):.4f} "
                  f"({r['epoch_seconds']:.1f} s/epoch, {time.perf_counter() - start:.0f} s)", flush=True)
    return 0


# ----------------------------------------------------------------------------- replay

class CurveTable:
    """Nearest-configuration lookup of recorded curves (a plain class: Tune pickles it)."""

    def __init__(self, curves: dict[tuple, list[float]]):
        self.curves = curves
        self.best = max(max(c) for c in curves.values())

    def nearest(self, config: dict) -> tuple:
        model, bs = config["model"], int(config["batch_size"])
        width = float(config.get("width", 1.0))
        candidates = [k for k in self.curves if k[0] == model and k[4] == bs] \
            or [k for k in self.curves if k[0] == model]
        if not candidates:
            raise KeyError(f"no recorded curve for model {model!r}")

        def distance(k):
            return (abs(math.log(k[1] / width)), abs(math.log(k[2] / config["lr"]))
                    + abs(math.log(k[3] / config["weight_decay"])))
        return min(candidates, key=distance)

    def share_within(self, tolerance: float) -> float:
        """Fraction of recorded configurations whose curve reaches best - tolerance."""
        return sum(max(c) >= self.best - tolerance for c in self.curves.values()) / len(self.curves)

    def rank_correlation(self, epoch: int) -> float:
        """Spearman correlation, over the recorded configurations, of the AUC at ``epoch`` with the
        curve's best: how well an ASHA rung at ``epoch`` ranks configurations."""
        from scipy.stats import spearmanr

        curves = list(self.curves.values())
        return float(spearmanr([c[epoch - 1] for c in curves], [max(c) for c in curves]).statistic)

    def curve(self, config: dict) -> list[float]:
        return self.curves[self.nearest(config)]


def first_trial_floor(table: CurveTable, study, tolerance: float, draws: int = 4000) -> dict:
    """What no strategy can beat when its first trial is a random draw (TPE's is: no history yet).

    With one trial at a time ASHA lets the first trial run to ``max_epochs`` (no rung has a rival),
    so a run can reach the target within ``max_epochs + earliest - 1`` trial-epochs (``earliest``:
    the first epoch at which any recorded curve reaches it) only if its first trial does; that
    happens with probability ``p_first``, estimated from ``draws`` draws of the study's own space.
    When ``p_first < 0.5`` every such strategy's median is above ``floor`` trial-epochs.
    """
    import optuna

    from study.search.space import define_by_run

    target = table.best - tolerance
    earliest = min(e for c in table.curves.values() for e, v in enumerate(c, 1) if v >= target)
    space, trials = define_by_run(study.search), optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    hits = 0
    for _ in range(draws):
        trial = trials.ask()
        space(trial)
        hits += max(table.curve(trial.params)) >= target
        trials.tell(trial, 0.0)
    return {"p_first": hits / draws, "floor": study.train.max_epochs + earliest - 1, "earliest": earliest}


def replay_trial(config: dict, *, table: CurveTable, metric: str) -> None:
    """A Tune function trainable that reports the nearest recorded curve, one epoch per report."""
    from ray import tune

    for epoch, value in enumerate(table.curve(config), 1):
        tune.report({"epoch": epoch, metric: value})


def make_strategy(name: str, study, seed: int, tpe_startup: int = 10):
    """``(search_alg, scheduler)`` for one strategy, built like the study builds its own."""
    import optuna
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from study.search.searcher import PruningOptunaSearch
    from study.search.space import define_by_run

    t = study.tune
    sampler = (optuna.samplers.TPESampler(seed=seed, n_startup_trials=tpe_startup)
               if name.endswith("TPE")
               else optuna.samplers.RandomSampler(seed=seed))
    search = PruningOptunaSearch(space=define_by_run(study.search), metric=t.metric, mode=t.mode,
                                 sampler=sampler, max_epochs=study.train.max_epochs)
    if name.startswith("ASHA"):
        scheduler = ASHAScheduler(time_attr="epoch", metric=t.metric, mode=t.mode,
                                  max_t=study.train.max_epochs, grace_period=t.grace_period,
                                  reduction_factor=t.reduction_factor)
    else:
        scheduler = FIFOScheduler()
    return search, scheduler


def replay_once(name: str, study, table: CurveTable, seed: int, max_trials: int,
                storage: str, tolerance: float = TOLERANCE, tpe_startup: int = 10) -> dict:
    """Run one strategy once; trial-epochs until a result reaches the target (inf: never)."""
    from ray import tune

    target = table.best - tolerance
    metric = study.tune.metric
    seen = {"epochs": 0, "hit": None, "trials": set()}

    class Count(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            seen["epochs"] += 1
            seen["trials"].add(trial.trial_id)
            if seen["hit"] is None and result[metric] >= target:
                seen["hit"] = seen["epochs"]

    class StopAtTarget(tune.Stopper):
        def __call__(self, trial_id, result):
            return False

        def stop_all(self):
            return seen["hit"] is not None

    search, scheduler = make_strategy(name, study, seed, tpe_startup)
    tuner = tune.Tuner(
        tune.with_parameters(replay_trial, table=table, metric=metric),
        tune_config=tune.TuneConfig(search_alg=search, scheduler=scheduler, num_samples=max_trials,
                                    max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(name=f"{name}-{seed}", storage_path=storage, stop=StopAtTarget(),
                                  callbacks=[Count()], verbose=int(os.environ.get("REPLAY_VERBOSE", 0))),
    )
    tuner.fit()
    return {"trial_epochs": seen["hit"] if seen["hit"] is not None else math.inf,
            "spent": seen["epochs"], "trials": len(seen["trials"])}


def summarise(results: dict[str, list[dict]], max_epochs: int) -> str:
    """Markdown table: median trial-epochs to target, how often reached, ratio to FIFO+random."""
    def median(rs):
        return statistics.median(r["trial_epochs"] for r in rs)

    base = median(results["FIFO+random"]) if "FIFO+random" in results else math.nan
    lines = ["| strategy | reps | reached | median trial-epochs to target | (full trials) "
             "| quartiles | vs FIFO+random |", "|---|---|---|---|---|---|---|"]
    for name, rs in results.items():
        eps = sorted(r["trial_epochs"] for r in rs)
        q1, q3 = eps[len(eps) // 4], eps[(3 * len(eps)) // 4]
        m = median(rs)
        ratio = m / base if math.isfinite(m) and math.isfinite(base) else math.nan
        lines.append(f"| {name} | {len(rs)} | {sum(math.isfinite(e) for e in eps)}/{len(rs)} | {m:g} "
                     f"| {m / max_epochs:.1f} | {q1:g}-{q3:g} | "
                     f"{'-' if math.isnan(ratio) else f'{ratio:.0%}'} |")
    return "\n".join(lines)


def replay(args) -> int:
    import ray

    from study.config import load_config
    from study.tracking.leaderboard import rung_epochs

    config, _, default_curves, _ = LANDSCAPES[args.landscape]
    study = load_config(config, args.set)
    curves = read_curves(Path(args.curves or default_curves))
    table = CurveTable({k: v[:study.train.max_epochs] for k, v in curves.items()})
    print(f"{len(curves)} recorded configurations; best val AUC {table.best:.4f}, "
          f"target {table.best - args.tolerance:.4f} (best - {args.tolerance:g}); "
          f"{table.share_within(args.tolerance):.0%} of the recorded configurations reach it; "
          f"ASHA grace {study.tune.grace_period}, "
          f"reduction {study.tune.reduction_factor}, max_t {study.train.max_epochs}; "
          f"{args.reps} reps x {args.max_trials} trials at most", flush=True)
    rungs = rung_epochs(study.tune.grace_period, study.tune.reduction_factor, study.train.max_epochs)[:-1]
    print("rank correlation of the AUC at a rung with the curve's best: "
          + ", ".join(f"epoch {e}: {table.rank_correlation(e):.2f}" for e in sorted({1, 2, *rungs})), flush=True)
    floor = first_trial_floor(table, study, args.tolerance)
    print(f"a random first trial reaches the target {floor['p_first']:.0%} of the time (earliest at "
          f"epoch {floor['earliest']}); so any strategy whose first trial is random needs more than "
          f"{floor['floor']} trial-epochs in {1 - floor['p_first']:.0%} of runs", flush=True)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    results: dict[str, list[dict]] = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as storage:
        for name in args.strategies:
            results[name] = [replay_once(name, study, table, seed, args.max_trials, storage,
                                       args.tolerance, args.tpe_startup)
                             for seed in range(args.reps)]
            print(f"{name}: {[r['trial_epochs'] for r in results[name]]} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    ray.shutdown()
    print()
    print(summarise(results, study.train.max_epochs))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="record learning curves on the grid (resumable)")
    rec.add_argument("--workers", type=int, default=2, help="parallel processes, one core each")
    rec.add_argument("--landscape", choices=sorted(LANDSCAPES), default="local")
    rec.add_argument("--curves", help="the table to append to (default: the landscape's)")
    rep = sub.add_parser("replay", help="replay the four strategies through Ray Tune")
    rep.add_argument("--reps", type=int, default=20)
    rep.add_argument("--max-trials", type=int, default=48,
                     help="trials per run at most (default 48, 3x the default study's 16)")
    rep.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    rep.add_argument("--landscape", choices=sorted(LANDSCAPES), default="local")
    rep.add_argument("--curves", help="the recorded table (default: the landscape's)")
    rep.add_argument("--tolerance", type=float, default=TOLERANCE,
                     help="target = best recorded val AUC minus this (default 0.01)")
    rep.add_argument("--tpe-startup", type=int, default=10,
                     help="TPE's random start-up trials (Optuna's default, which the study uses: 10)")
    rep.add_argument("--set", action="append", default=[],
                     help="override the study config, e.g. tune.grace_period=1")
    args = ap.parse_args(argv)
    return record(args) if args.command == "record" else replay(args)


def script_environment() -> None:
    """One thread per process, no Tune file loggers, Tune's classic console: set only when run
    as a script, so importing this module (its test does) leaves the caller's environment alone."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")


if __name__ == "__main__":
    script_environment()
    sys.exit(main())
