#!/usr/bin/env python
"""Efficiency of the search: trial-epochs each strategy needs to get near the best, and how often
it names the right group.

A tabular HPO benchmark (as in HPOBench / LCBench): real learning curves are recorded once on a
grid of configurations, then search strategies are replayed through the real Ray Tune schedulers
and searchers with a trainable that looks up the nearest recorded configuration (same model and
batch size, nearest width, nearest log learning rate and log weight decay) and reports one of its
recorded runs (seed drawn per trial) epoch by epoch - no training, so a replay costs seconds.

    python benchmarks/study_efficiency.py                 # replay both landscapes, 50 reps each (~40 min)
    python benchmarks/study_efficiency.py replay --landscape model_i --reps 10 --strategies ASHA+TPE FIFO+random
    python benchmarks/study_efficiency.py record [--workers 2]   # ~60 min on 2 cores, resumable
    python benchmarks/study_efficiency.py record --landscape model_i   # ~60 min on 2 cores, resumable

Two landscapes (``--landscape``):

- ``local``: the laptop study (``configs/local.yaml``: small64 at 33 px, 8 epochs, seed 0), every
  group, width and batch size, lr 3e-4 / 1e-3 / 3e-3, weight decay 3e-5: 66 configurations;
- ``model_i``: the Model I laptop config (``configs/model-i-laptop.yaml``: DeepLense Model I
  physics at 65 px, where the curves stay near chance for the first epochs and the groups differ),
  every group of it plus ResNet-18, 12 epochs, two seeds per configuration (``seed`` column), on a
  fractional grid: width 1/16, lr 3e-4 / 1e-3 / 3e-3, and (weight decay, batch size) (1e-5, 32)
  and (3e-4, 64): 36 configurations. A configuration's mean curve over its seeds is the truth.

Strategies: ``benchmarks/search_strategies.py``. One trial at a time (``max_concurrent_trials=1``)
so the order of results, hence the count, is deterministic given the rep's seed. Per run:

- trial-epochs until a reported validation AUC is within 0.01 and 0.005 of the grid's best
  (the best mean curve); a run that never gets there in ``--max-trials`` trials counts as inf;
- the group the study would name (its leaderboard's rule: the best trial at the deepest rung)
  after 1/8, 1/4 and 1/2 of the grid's compute (configurations x epochs); it is right when that
  group's best mean final AUC is within 0.01 of the best group's (an indifference zone).

Medians carry 95% percentile-bootstrap intervals (reps resampled), ratios to FIFO+random too
(both sides resampled), and proportions a Wilson interval.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import math
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))   # search_strategies.py

ROOT = Path(__file__).resolve().parents[1]
CURVES = ROOT / "benchmarks" / "data" / "curves_local.csv"
CONFIG = ROOT / "configs" / "local.yaml"
LANDSCAPES = {   # name -> (study config, its overrides for recording, curves table, seeds)
    "local": (CONFIG, [], CURVES, (0,)),
    "model_i": (ROOT / "configs" / "model-i-laptop.yaml", ["train.max_epochs=12"],
                ROOT / "benchmarks" / "data" / "curves_model_i.csv", (0, 1)),
}
MODEL_I_WD_BS = ((1e-5, 32), (3e-4, 64))   # the fractional grid's (weight decay, batch size) pairs
# The replay's study: 12 epochs on Model I (its curves rise until then; the laptop config stops
# at 6), and every recorded group, ResNet-18 included.
REPLAY_OVERRIDES = {"local": [], "model_i": ["train.max_epochs=12",
                                             "search.groups=[trivial, C4, C8, D4, D8, resnet18]"]}
TOLERANCES = (0.01, 0.005)   # targets: the grid's best minus these
INDIFFERENCE_ZONE = 0.01     # a named group is right if its best is within this of the best group's
BOOTSTRAP = 2000             # resamples for each interval
DEFAULT = "ASHA+TPE"         # the study's search (search.allocation: adaptive), chosen by this replay
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
    return mean_curves(runs_by_configuration(read_seed_curves(path)))


def runs_by_configuration(per_seed: dict[tuple, list[float]], epochs: int | None = None) -> dict[tuple, list[list[float]]]:
    """``{configuration: [curve of each seed, in seed order]}``, each cut to ``epochs``."""
    runs: dict[tuple, list[list[float]]] = {}
    for (key, _seed), curve in sorted(per_seed.items()):
        runs.setdefault(key, []).append(curve[:epochs])
    return runs


def mean_curves(runs: dict[tuple, list[list[float]]]) -> dict[tuple, list[float]]:
    """Each configuration's mean curve over its seeds."""
    return {k: [sum(v) / len(v) for v in zip(*c)] for k, c in runs.items()}


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
    """Nearest-configuration lookup of recorded curves (a plain class: Tune pickles it).

    ``curves``: each configuration's mean curve over its seeds (the landscape's truth: its best,
    which group is best). ``seed_curves``: each configuration's recorded runs; a replayed trial
    sees one of them, drawn per trial, so the search meets the seed-to-seed noise a study meets.
    """

    def __init__(self, curves: dict[tuple, list[float]], seed_curves: dict[tuple, list[list[float]]] | None = None):
        self.curves = curves
        self.seed_curves = seed_curves or {k: [v] for k, v in curves.items()}
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

    def observed(self, config: dict, rep: int) -> list[float]:
        """The run a trial of ``config`` sees in replay ``rep``: one recorded seed, drawn from the
        configuration's exact values (so a paused and resumed trial sees the same run)."""
        runs = self.seed_curves[self.nearest(config)]
        return runs[random.Random(f"{rep}:{sorted(config.items())}").randrange(len(runs))]

    def group_finals(self) -> dict[str, float]:
        """Each group's best configuration's mean final validation AUC."""
        finals: dict[str, float] = {}
        for key, curve in self.curves.items():
            finals[key[0]] = max(finals.get(key[0], -math.inf), curve[-1])
        return finals

    def right_groups(self, zone: float = INDIFFERENCE_ZONE) -> set[str]:
        """The groups a study is right to name: best mean final AUC within ``zone`` of the top."""
        finals = self.group_finals()
        top = max(finals.values())
        return {g for g, v in finals.items() if v >= top - zone}


def first_trial_floor(table: CurveTable, study, tolerance: float, draws: int = 4000) -> dict:
    """What no strategy can beat when its first trial is a random draw (TPE's is: no history yet).

    With one trial at a time ASHA lets the first trial run to ``max_epochs`` (no rung has a rival),
    so a run can reach the target within ``max_epochs + earliest - 1`` trial-epochs (``earliest``:
    the first epoch at which any recorded run reaches it) only if its first trial does; that
    happens with probability ``p_first``, estimated from ``draws`` draws of the study's own space
    (each seeing a recorded run, as a replayed trial does).
    When ``p_first < 0.5`` every such strategy's median is above ``floor`` trial-epochs.
    """
    import optuna

    from study.search.space import define_by_run

    target = table.best - tolerance
    earliest = min(e for runs in table.seed_curves.values() for c in runs
                   for e, v in enumerate(c, 1) if v >= target)
    space, trials = define_by_run(study.search), optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    hits = 0
    for draw in range(draws):
        trial = trials.ask()
        space(trial)
        hits += max(table.observed(trial.params, draw)) >= target
        trials.tell(trial, 0.0)
    return {"p_first": hits / draws, "floor": study.train.max_epochs + earliest - 1, "earliest": earliest}


def replay_trial(config: dict, *, table: CurveTable, metric: str, rep: int, checkpoints: bool) -> None:
    """A Tune function trainable that reports a recorded run of the nearest configuration, one
    epoch per report. ``checkpoints``: with each epoch a checkpoint naming it, from which a trial
    HyperBand paused resumes (the other strategies never pause, and skip the cost)."""
    from ray import tune

    start = 0
    if (checkpoint := tune.get_checkpoint()) is not None:
        with checkpoint.as_directory() as folder:
            start = int((Path(folder) / "epoch").read_text())
    for epoch, value in enumerate(table.observed(config, rep), 1):
        if epoch <= start:
            continue
        if not checkpoints:
            tune.report({"epoch": epoch, metric: value})
            continue
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "epoch").write_text(str(epoch))
            tune.report({"epoch": epoch, metric: value}, checkpoint=tune.Checkpoint.from_directory(folder))


def named_group(history: dict[str, tuple[str, list[tuple[int, float]]]], rungs: list[int]) -> str | None:
    """The group a study would name from ``{trial: (group, [(epoch, value), ...])}``: the group of
    its best trial by the leaderboard's rule (deepest rung reached, then the best score there)."""
    import pandas as pd

    from study.tracking.leaderboard import best_trial, rung_column, scores_per_rung

    rows = []
    for group, seen in history.values():
        at = scores_per_rung(seen, rungs, "max")
        rows.append({"model": group, "status": "completed", "best": max(v for _, v in seen),
                     **{rung_column("val_auc", r): at.get(r, math.nan) for r in rungs}})
    winner = best_trial(pd.DataFrame(rows)) if rows else None
    return winner["model"] if winner else None


def replay_once(name: str, study, table: CurveTable, seed: int, max_trials: int, storage: str,
                tolerances=TOLERANCES, budgets: tuple[int, ...] = ()) -> dict:
    """Run one strategy once. Returns the trial-epochs until a result first reaches the best minus
    each tolerance (inf: never) and the group the study would name after each budget of
    trial-epochs; the run stops once it has both (or after ``max_trials`` trials)."""
    from ray import tune

    from search_strategies import make_strategy, needs_checkpoints
    from study.tracking.leaderboard import rung_epochs

    metric = study.tune.metric
    rungs = rung_epochs(study.tune.grace_period, study.tune.reduction_factor, study.train.max_epochs)
    seen = {"epochs": 0, "to": {}, "named": {}, "history": {}}

    def done() -> bool:
        return len(seen["to"]) == len(tolerances) and len(seen["named"]) == len(budgets)

    class Count(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            seen["epochs"] += 1
            group = trial.config["model"]
            seen["history"].setdefault(trial.trial_id, (group, []))[1].append((result["epoch"], result[metric]))
            for tol in tolerances:
                if tol not in seen["to"] and result[metric] >= table.best - tol:
                    seen["to"][tol] = seen["epochs"]
            for budget in budgets:
                if budget not in seen["named"] and seen["epochs"] >= budget:
                    seen["named"][budget] = named_group(seen["history"], rungs)

    class StopWhenDone(tune.Stopper):
        def __call__(self, trial_id, result):
            return False

        def stop_all(self):
            return done()

    search, scheduler = make_strategy(name, study, seed)
    tuner = tune.Tuner(
        tune.with_parameters(replay_trial, table=table, metric=metric, rep=seed,
                             checkpoints=needs_checkpoints(name)),
        tune_config=tune.TuneConfig(search_alg=search, scheduler=scheduler, num_samples=max_trials,
                                    max_concurrent_trials=1, reuse_actors=True),
        run_config=tune.RunConfig(name=f"{name.replace('/', '-')}-{seed}", storage_path=storage,
                                  stop=StopWhenDone(), callbacks=[Count()],
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                  verbose=int(os.environ.get("REPLAY_VERBOSE", 0))),
    )
    tuner.fit()
    for budget in budgets:   # ran out of trials first: name from everything it saw
        seen["named"].setdefault(budget, named_group(seen["history"], rungs))
    return {"to": {tol: seen["to"].get(tol, math.inf) for tol in tolerances}, "named": seen["named"],
            "spent": seen["epochs"], "trials": len(seen["history"])}


# ----------------------------------------------------------------------------- statistics

def bootstrap_median(values: list[float], draws: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float, float]:
    """The median and its 95% percentile-bootstrap interval (unreached runs count as inf)."""
    import numpy as np

    x = np.asarray(values, dtype=float)
    medians = _resampled_medians(x, np.random.default_rng(seed), draws)
    return float(np.median(x)), *(float(q) for q in np.percentile(medians, [2.5, 97.5]))


def bootstrap_ratio(values: list[float], base: list[float], draws: int = BOOTSTRAP,
                    seed: int = 0) -> tuple[float, float, float]:
    """median(values) / median(base) and its 95% interval, both sides resampled independently."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x, y = np.asarray(values, dtype=float), np.asarray(base, dtype=float)
    mx, my = _resampled_medians(x, rng, draws), _resampled_medians(y, rng, draws)
    with np.errstate(invalid="ignore"):
        ratios = mx / my
    return float(np.median(x) / np.median(y)), *(float(q) for q in np.nanpercentile(ratios, [2.5, 97.5]))


def _resampled_medians(x, rng, draws: int):
    """The medians of ``draws`` resamples of ``x`` with replacement."""
    import numpy as np

    return np.median(rng.choice(x, size=(draws, len(x))), axis=1)


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def _interval(m: float, lo: float, hi: float, fmt: str = "") -> str:
    def f(v):
        if math.isinf(v) or math.isnan(v):
            return "inf" if math.isinf(v) else "-"
        return fmt.format(v) if fmt else f"{v:.1f}".removesuffix(".0")
    return f"{f(m)} [{f(lo)}, {f(hi)}]"


def efficiency_table(results: dict[str, list[dict]], tolerances=TOLERANCES) -> str:
    """Markdown: per strategy and tolerance, median trial-epochs to the target, its bootstrap
    interval, how often reached, and the ratio of medians to FIFO+random with its interval."""
    head = "| strategy | reps |" + "".join(
        f" within {t:g}: reached | median trial-epochs [95% CI] | vs FIFO+random [95% CI] |" for t in tolerances)
    lines = [head, "|---|---|" + "---|---|---|" * len(tolerances)]
    base = results.get("FIFO+random")
    for name, rs in results.items():
        cells = [name, str(len(rs))]
        for tol in tolerances:
            eps = [r["to"][tol] for r in rs]
            cells.append(f"{sum(math.isfinite(e) for e in eps)}/{len(rs)}")
            cells.append(_interval(*bootstrap_median(eps)))
            cells.append(_interval(*bootstrap_ratio(eps, [r["to"][tol] for r in base]), fmt="{:.0%}")
                         if base else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def naming_table(results: dict[str, list[dict]], right: set[str], budgets: dict[int, str]) -> str:
    """Markdown: per strategy, how often the named group is right after each budget (Wilson 95%)."""
    lines = ["| strategy |" + "".join(f" right at {label} of the grid [95% CI] |" for label in budgets.values())
             + " groups named at the largest budget |",
             "|---|" + "---|" * len(budgets) + "---|"]
    for name, rs in results.items():
        cells = [name]
        for budget in budgets:
            k = sum(r["named"].get(budget) in right for r in rs)
            lo, hi = wilson(k, len(rs))
            cells.append(f"{k / len(rs):.0%} [{lo:.0%}, {hi:.0%}]")
        last = max(budgets)
        counts = Counter(str(r["named"].get(last)) for r in rs)
        cells.append(", ".join(f"{g} {n}" for g, n in counts.most_common()))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the command

def replay_landscape(landscape: str, args) -> dict:
    """Replay every strategy ``args.reps`` times on one landscape and print what they did."""
    from study.config import load_config
    from study.tracking.leaderboard import rung_epochs

    config, _, default_curves, _ = LANDSCAPES[landscape]
    study = load_config(config, [*REPLAY_OVERRIDES[landscape], *args.set])
    path = Path(args.curves or default_curves)
    max_t = study.train.max_epochs
    seed_curves = runs_by_configuration(read_seed_curves(path), max_t)
    table = CurveTable(mean_curves(seed_curves), seed_curves)
    grid_epochs = len(table.curves) * max_t
    budgets = {grid_epochs // d: f"1/{d}" for d in (8, 4, 2)}
    right = table.right_groups()
    finals = table.group_finals()
    print(f"\n## {landscape}: {len(table.curves)} recorded configurations "
          f"({max(len(v) for v in seed_curves.values())} seed(s) each; a trial sees one), "
          f"grid {grid_epochs} trial-epochs; best val AUC {table.best:.4f}; "
          + "; ".join(f"within {t:g}: {table.share_within(t):.0%} of configurations" for t in TOLERANCES)
          + f"; ASHA grace {study.tune.grace_period}, reduction {study.tune.reduction_factor}, "
          f"max_t {max_t}; {args.reps} reps x {args.max_trials} trials at most", flush=True)
    print("groups' best mean final val AUC: " + ", ".join(f"{g} {v:.4f}" for g, v in
          sorted(finals.items(), key=lambda kv: -kv[1])) + f"; right to name (within "
          f"{INDIFFERENCE_ZONE:g}): {', '.join(sorted(right))}", flush=True)
    rungs = rung_epochs(study.tune.grace_period, study.tune.reduction_factor, max_t)[:-1]
    print("rank correlation of the AUC at an epoch with the curve's best: "
          + ", ".join(f"epoch {e}: {table.rank_correlation(e):.2f}" for e in sorted({1, 2, 4, 8, *rungs})
                      if e < max_t), flush=True)
    floors = {}
    for tol in TOLERANCES:
        floor = floors[tol] = first_trial_floor(table, study, tol)
        print(f"within {tol:g}: a random first trial reaches the target {floor['p_first']:.0%} of the time "
              f"(earliest at epoch {floor['earliest']}), so a strategy whose first trial is random needs "
              f"more than {floor['floor']} trial-epochs in {1 - floor['p_first']:.0%} of runs", flush=True)
    results: dict[str, list[dict]] = {}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as storage:
        for name in args.strategies:
            results[name] = [replay_once(name, study, table, seed, args.max_trials, storage,
                                         TOLERANCES, tuple(budgets)) for seed in range(args.reps)]
            print(f"{name}: to within {TOLERANCES[0]:g}: {[r['to'][TOLERANCES[0]] for r in results[name]]} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"\n### {landscape}: trial-epochs until a result is within the tolerance of the grid's best\n")
    print(efficiency_table(results))
    print(f"\n### {landscape}: the study names a right group ({', '.join(sorted(right))}) after a "
          f"budget of trial-epochs ({', '.join(f'{label} = {b}' for b, label in budgets.items())})\n")
    print(naming_table(results, right, budgets))
    print()
    print(verdict_lines(results, right, budgets, floors))
    return results


def verdict_lines(results: dict[str, list[dict]], right: set[str], budgets: dict[int, str],
                  floors: dict[float, dict]) -> str:
    """The answers to the two questions, for the study's default strategy (``DEFAULT``)."""
    lines = []
    base = results.get("FIFO+random")
    for tol in TOLERANCES:
        if not base:
            break
        ratios = {n: bootstrap_ratio([r["to"][tol] for r in rs], [r["to"][tol] for r in base])
                  for n, rs in results.items() if n != "FIFO+random"}
        best = min(ratios, key=lambda n: ratios[n][0])
        line = f"within {tol:g}: the best strategy, {best}, needs {_interval(*ratios[best], fmt='{:.0%}')} of FIFO+random's trial-epochs"
        if DEFAULT in ratios:
            line += f"; the default, {DEFAULT}, {_interval(*ratios[DEFAULT], fmt='{:.0%}')}"
        goal = 0.4 * bootstrap_median([r["to"][tol] for r in base])[0]
        if ratios[best][0] > 0.4 and tol in floors and floors[tol]["floor"] >= goal:
            line += (f". 40% of FIFO+random's median is {goal:g} trial-epochs, at or below the floor of "
                     f"{floors[tol]['floor']} that {1 - floors[tol]['p_first']:.0%} of runs of any strategy "
                     "training its first trial to the end cannot beat")
        lines.append(line)
    quarter = next((b for b, label in budgets.items() if label == "1/4"), None)
    if DEFAULT in results and quarter:
        k = sum(r["named"].get(quarter) in right for r in results[DEFAULT])
        lo, hi = wilson(k, len(results[DEFAULT]))
        lines.append(f"the default, {DEFAULT}, names a right group in {k}/{len(results[DEFAULT])} replays "
                     f"({k / len(results[DEFAULT]):.0%}, 95% CI [{lo:.0%}, {hi:.0%}]) at 1/4 of the grid's "
                     f"compute ({quarter} trial-epochs)")
    return "\n".join(lines)


def replay(args) -> int:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    start = time.perf_counter()
    for landscape in args.landscape:
        replay_landscape(landscape, args)
    ray.shutdown()
    print(f"\n{time.perf_counter() - start:.0f} s in all")
    return 0


def main(argv=None) -> int:
    from search_strategies import STRATEGIES

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command")
    rec = sub.add_parser("record", help="record learning curves on the grid (resumable)")
    rec.add_argument("--workers", type=int, default=2, help="parallel processes, one core each")
    rec.add_argument("--landscape", choices=sorted(LANDSCAPES), default="local")
    rec.add_argument("--curves", help="the table to append to (default: the landscape's)")
    rep = sub.add_parser("replay", help="replay the strategies through Ray Tune (the default command)")
    rep.add_argument("--reps", type=int, default=50)
    rep.add_argument("--max-trials", type=int, default=48,
                     help="trials per run at most (default 48, 3x the default study's 16)")
    rep.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    rep.add_argument("--landscape", nargs="+", choices=sorted(LANDSCAPES), default=sorted(LANDSCAPES))
    rep.add_argument("--curves", help="the recorded table (default: the landscape's)")
    rep.add_argument("--set", action="append", default=[],
                     help="override the study config, e.g. tune.grace_period=1")
    args = ap.parse_args(argv or sys.argv[1:] or ["replay"])
    return record(args) if args.command == "record" else replay(args)


def script_environment() -> None:
    """One thread per process, no Tune file loggers, Tune's classic console: set only when run
    as a script, so importing this module (its test does) leaves the caller's environment alone."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)   # "A new study created" per replay
    warnings.filterwarnings("ignore", module="statsmodels")  # BOHB's kernel density on a 1-level choice
    warnings.filterwarnings("ignore", category=FutureWarning)


if __name__ == "__main__":
    script_environment()
    sys.exit(main())
