"""The study's results as tables and plots, built from the MLflow child runs.

MLflow is the record of the study: the leaderboard is read back from the child runs (one per
trial, whatever node or driver wrote it), so a resumed study counts every trial exactly once.

Matched budgets: ASHA stops most trials early, and a score after 2 epochs cannot be set beside
one after 8. Every table therefore reports scores per rung (``<metric>_at_<r>``: the best value
within the first ``r`` epochs, for trials that trained ``r`` epochs; empty for a trial stopped
before), and ranks groups and trials by the deepest rung first, then by the score there.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pandas as pd

from study.tracking.mlflow_store import SPEC_PARAMS, TRIAL_TAG, child_runs

LEADERBOARD_COLUMNS = ["trial", "model", "width", "lr", "weight_decay", "batch_size", "status",
                       "epochs", "best", "node", "trial_id", "run_id"]


def rung_epochs(grace_period: int, reduction_factor: int, max_epochs: int) -> list[int]:
    """ASHA's rungs: ``g, g eta, g eta^2, ...`` below ``max_epochs``, then ``max_epochs`` itself."""
    rungs, epoch = [], grace_period
    while epoch < max_epochs:
        rungs.append(epoch)
        epoch *= reduction_factor
    return rungs + [max_epochs]


def rung_column(metric: str, rung: int) -> str:
    return f"{metric.removeprefix('val_')}_at_{rung}"


def scores_per_rung(history: list[tuple[int, float]], rungs: list[int], mode: str) -> dict[int, float]:
    """Best value within the first r epochs, for each rung r the trial reached (``(epoch, value)``)."""
    best = max if mode == "max" else min
    reached = max((epoch for epoch, _ in history), default=0)
    return {r: best(v for e, v in history if e <= r) for r in rungs
            if r <= reached and any(e <= r for e, _ in history)}


def study_trials(client, experiment_id: str, parent_run_id: str, config) -> pd.DataFrame:
    """A study's trials with a column per ASHA rung of its config (``study.config.StudyConfig``)."""
    t = config.tune
    rungs = rung_epochs(t.grace_period, t.reduction_factor, config.train.max_epochs)
    return collect_trials(client, experiment_id, parent_run_id, t.metric, t.mode, rungs)


def collect_trials(client, experiment_id: str, parent_run_id: str, metric: str, mode: str = "max",
                   rungs: list[int] = ()) -> pd.DataFrame:
    """One row per trial: sampled values, status, epochs run, the best ``metric`` reached and,
    for each of ``rungs``, the best ``metric`` within that many epochs (see the module docstring)."""
    rows = []
    for run in child_runs(client, experiment_id, parent_run_id):
        p, m, tags = run.data.params, run.data.metrics, run.data.tags
        at = {}
        if rungs:
            history = [(h.step, h.value) for h in client.get_metric_history(run.info.run_id, metric)]
            at = scores_per_rung(history, list(rungs), mode)
        rows.append({
            "trial": run.info.run_name,
            **{k: _number(p.get(k)) for k in SPEC_PARAMS},
            "status": tags.get("status", "running"),
            "epochs": int(m.get("epoch", 0)),
            "best": m.get(f"best_{metric}", math.nan),
            "node": tags.get("node", ""),
            "trial_id": tags.get(TRIAL_TAG, ""),
            "run_id": run.info.run_id,
            **{rung_column(metric, r): at.get(r, math.nan) for r in rungs},
        })
    columns = LEADERBOARD_COLUMNS + [rung_column(metric, r) for r in rungs]
    df = pd.DataFrame(rows, columns=columns)
    return df.sort_values("best", ascending=(mode == "min"), na_position="last").reset_index(drop=True)


def rung_columns(trials: pd.DataFrame) -> list[str]:
    """The ``*_at_<r>`` columns of a leaderboard, shallowest rung first."""
    return sorted((c for c in trials.columns if "_at_" in c), key=lambda c: int(c.rsplit("_", 1)[1]))


def matched_order(trials: pd.DataFrame, mode: str = "max") -> pd.DataFrame:
    """Trials ranked by the deepest rung they reached, then by their score at that rung."""
    columns = rung_columns(trials)
    if not columns:
        return trials
    depth = trials[columns].notna().sum(axis=1)
    deepest = trials[columns].ffill(axis=1).iloc[:, -1]
    key = deepest if mode == "max" else -deepest
    order = pd.DataFrame({"depth": depth, "key": key.fillna(-math.inf)})
    return trials.loc[order.sort_values(["depth", "key"], ascending=False, kind="stable").index]


def by_group(trials: pd.DataFrame, mode: str = "max") -> pd.DataFrame:
    """The seeds' table: for each model its best score and which trial got it.

    With rung columns (matched budgets): the group's best score at every rung (empty where none
    of its trials trained that long), ranked by the deepest rung the group reached, then by its
    score there; ``best_trial`` is the trial with that score, ``reached`` says whether it was
    stopped early. Without them: the best score of any epoch (``trials`` sorted best-first).
    """
    columns = rung_columns(trials)
    counts = trials.groupby("model").size()
    epochs = trials.groupby("model")["epochs"].sum()
    if not columns:
        scored = trials.dropna(subset=["best"])
        best_rows = scored.groupby("model", sort=False).head(1)
        return pd.DataFrame({"model": best_rows["model"].values, "best": best_rows["best"].values,
                             "trials": [int(counts[m]) for m in best_rows["model"]],
                             "trial_epochs": [int(epochs[m]) for m in best_rows["model"]],
                             "best_trial": best_rows["trial"].values})
    pick = (lambda s: s.max()) if mode == "max" else (lambda s: s.min())
    rows = []
    for model, group in matched_order(trials, mode).groupby("model", sort=False):
        top = group.iloc[0]
        deepest = [c for c in columns if pd.notna(top[c])]
        rows.append({"model": model, "trials": int(counts[model]), "trial_epochs": int(epochs[model]),
                     **{c: pick(group[c].dropna()) if group[c].notna().any() else math.nan
                        for c in columns},
                     "best_trial": top["trial"],
                     "reached": (f"{top['status']} at epoch {deepest[-1].rsplit('_', 1)[1]}"
                                 if deepest else top["status"])})
    return pd.DataFrame(rows, columns=["model", "trials", "trial_epochs", *columns, "best_trial", "reached"])


def unequal_budgets(trials: pd.DataFrame, groups: list[str], per_group_stopping: bool = False) -> str | None:
    """One line when the groups' tuning budgets differ, else None: a group tuned more can win for
    that reason alone (Dodge et al. 2019). Unequal: different numbers of trials or, unless every
    group had rungs of its own (``per_group_stopping``, ``search.allocation: equal``), trial-epochs
    differing by more than a tenth. With rungs per group, a group's trial-epochs differ only by how
    its own trials compared with each other, so equal trials are an equal budget."""
    budget = {g: (int((trials.model == g).sum()), int(trials.loc[trials.model == g, "epochs"].sum()))
              for g in groups}
    counts = [b[0] for b in budget.values()]
    epochs = [b[1] for b in budget.values()]
    if len(set(counts)) <= 1 and (per_group_stopping or max(epochs) <= 1.1 * min(epochs)):
        return None
    spelled = ", ".join(f"{g} {n} trials / {e} trial-epochs" for g, (n, e) in budget.items())
    fixes = [] if per_group_stopping else ["search.allocation=equal gives every group the same number of trials"]
    if unsearched := [g for g, (n, _) in budget.items() if n == 0]:
        fixes.insert(0, f"{', '.join(unsearched)} had no trials: add it to search.groups to tune it")
    return (f"unequal tuning budgets ({spelled}): a group tuned more can come out ahead for that "
            f"reason alone; {'; '.join(fixes)}")


def markdown(df: pd.DataFrame, floatfmt: str = "{:.4g}") -> str:
    """A GitHub Markdown table (no extra dependency)."""
    def cell(v):
        if isinstance(v, float):
            return "-" if math.isnan(v) else floatfmt.format(v)
        return str(v)

    head = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


FINISHED = ("completed", "pruned")


def best_trial(trials: pd.DataFrame, mode: str = "max") -> dict | None:
    """The study's winner, one rule for the leaderboard tag and ``best``: among finished trials
    (completed or stopped by ASHA; failed ones never win) the first in :func:`matched_order`,
    i.e. the best score at the deepest rung any trial reached; without rung columns the best
    score of any epoch."""
    scored = trials[trials.status.isin(FINISHED)].dropna(subset=["best"])
    if scored.empty:
        return None
    if not rung_columns(scored):
        scored = scored.sort_values("best", ascending=mode == "min", kind="stable")
    return matched_order(scored, mode).iloc[0].to_dict()


MATCHED_NOTE = ("Scores per rung: best {metric} within the first r epochs, for trials that trained "
                "r epochs (-: stopped before). Ranked by the deepest rung reached, then by the "
                "score there; compare groups within a column, not across columns.")


def write_tables(trials: pd.DataFrame, folder: Path, metric: str, mode: str = "max") -> list[Path]:
    """Leaderboard and per-group tables as CSV and Markdown; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    groups = by_group(trials, mode).rename(columns={"best": f"best_{metric}"})
    shown = matched_order(trials, mode).rename(columns={"best": f"best_{metric}"})
    note = MATCHED_NOTE.format(metric=metric) + "\n\n" if rung_columns(trials) else ""
    hidden = ["run_id"] + ([f"best_{metric}"] if note else [])   # any-epoch best: not comparable
    files = {
        "leaderboard.csv": shown.to_csv(index=False),
        "leaderboard.md": f"## Trials\n\n{note}{markdown(shown.drop(columns=hidden))}\n"
                          f"## {metric} per group\n\n{note}{markdown(groups)}",
        "groups.csv": groups.to_csv(index=False),
    }
    for name, text in files.items():
        (folder / name).write_text(text)
    return [folder / name for name in files]


def write_best_config(best: dict, study_config: dict, folder: Path) -> list[Path]:
    """The winning trial's values plus the study's fixed settings, as JSON and YAML."""
    import yaml

    payload = {"trial": best["trial"], "run_id": best["run_id"], "trial_id": best["trial_id"],
               "best": float(best["best"]), "epochs": int(best["epochs"]),
               "sampled": {k: _plain(best[k]) for k in SPEC_PARAMS if not _missing(best[k])},
               "study": study_config}
    (folder / "best_config.json").write_text(json.dumps(payload, indent=2))
    (folder / "best_config.yaml").write_text(yaml.safe_dump(payload, sort_keys=False))
    return [folder / "best_config.json", folder / "best_config.yaml"]


def write_optuna_plots(study, folder: Path) -> list[Path]:
    """Optuna's own plots (matplotlib backend) as PNG; a plot that needs more trials is skipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    plots = {"optimization_history.png": ovm.plot_optimization_history,
             "param_importances.png": ovm.plot_param_importances,
             "parallel_coordinate.png": ovm.plot_parallel_coordinate}
    written = []
    for name, plot in plots.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ax = plot(study)
            except Exception as err:  # e.g. importances need >= 2 finished trials
                print(f"note: skipped {name}: {err}")
                continue
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).get_figure()
        fig.set_size_inches(9, 5.5)
        fig.tight_layout()
        fig.savefig(folder / name, dpi=110)
        plt.close(fig)
        written.append(folder / name)
    return written


def _number(text):
    if text is None:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text else value


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _plain(v):
    return v.item() if hasattr(v, "item") else v
