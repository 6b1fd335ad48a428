"""The study's results as tables and plots, built from the MLflow child runs.

MLflow is the record of the study: the leaderboard is read back from the child runs (one per
trial, whatever node or driver wrote it), so a resumed study counts every trial exactly once.
"""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import pandas as pd

from study.tracking import SPEC_PARAMS, TRIAL_TAG, child_runs

LEADERBOARD_COLUMNS = ["trial", "model", "width", "lr", "weight_decay", "batch_size", "status",
                       "epochs", "best", "node", "trial_id", "run_id"]


def collect_trials(client, experiment_id: str, parent_run_id: str, metric: str, mode: str = "max") -> pd.DataFrame:
    """One row per trial: sampled values, status, epochs run and the best ``metric`` reached."""
    rows = []
    for run in child_runs(client, experiment_id, parent_run_id):
        p, m, tags = run.data.params, run.data.metrics, run.data.tags
        rows.append({
            "trial": run.info.run_name,
            **{k: _number(p.get(k)) for k in SPEC_PARAMS},
            "status": tags.get("status", "running"),
            "epochs": int(m.get("epoch", 0)),
            "best": m.get(f"best_{metric}", math.nan),
            "node": tags.get("node", ""),
            "trial_id": tags.get(TRIAL_TAG, ""),
            "run_id": run.info.run_id,
        })
    df = pd.DataFrame(rows, columns=LEADERBOARD_COLUMNS)
    return df.sort_values("best", ascending=(mode == "min"), na_position="last").reset_index(drop=True)


def by_group(trials: pd.DataFrame) -> pd.DataFrame:
    """The seeds' table: for each model, the best score of its trials and which trial got it.

    ``trials`` comes sorted best-first (see :func:`collect_trials`), so the first row of each
    model is its best.
    """
    scored = trials.dropna(subset=["best"])
    best_rows = scored.groupby("model", sort=False).head(1)
    counts = trials.groupby("model").size()
    return pd.DataFrame({
        "model": best_rows["model"].values,
        "best": best_rows["best"].values,
        "trials": [int(counts[m]) for m in best_rows["model"]],
        "best_trial": best_rows["trial"].values,
    })


def markdown(df: pd.DataFrame, floatfmt: str = "{:.4g}") -> str:
    """A GitHub Markdown table (no extra dependency)."""
    def cell(v):
        return floatfmt.format(v) if isinstance(v, float) and not math.isnan(v) else str(v)

    head = "| " + " | ".join(df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


def best_trial(trials: pd.DataFrame) -> dict | None:
    scored = trials.dropna(subset=["best"])
    return None if scored.empty else scored.iloc[0].to_dict()


def write_tables(trials: pd.DataFrame, folder: Path, metric: str) -> list[Path]:
    """Leaderboard and per-group tables as CSV and Markdown; returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    groups = by_group(trials).rename(columns={"best": f"best_{metric}"})
    shown = trials.rename(columns={"best": f"best_{metric}"})
    files = {
        "leaderboard.csv": shown.to_csv(index=False),
        "leaderboard.md": f"## Trials by best {metric}\n\n{markdown(shown.drop(columns=['run_id']))}\n"
                          f"## Best {metric} per group\n\n{markdown(groups)}",
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
