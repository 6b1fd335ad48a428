"""The verdict's record: MLflow runs, the Markdown table, the plot and the plain-words statement.

Written to ``--out`` (default ``runs/<study>.verdict``) and to the ``verdict`` MLflow run under
``verdict/``: ``verdict.md`` (the table and statement), ``verdict.png`` (test AUC per seed and
group; difference from the control with its interval), ``retrains.csv`` (one row per retrain),
``groups.csv``, ``comparison.csv`` and ``verdict.json`` (all of it as data).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from study.tracking.mlflow_store import PARENT_TAG
from study.verdict.stats import compare_with_control, group_summary, metric_keys, retrain_table


class VerdictLog:
    """The ``verdict`` MLflow run and one child run per retrain, written by the driver only."""

    def __init__(self, record, seeds: int, epochs: int, data: str):
        from mlflow.entities import Param

        self.record, self.client = record, record.client
        tags = {"role": "verdict", "study": record.name, "study_run_id": record.parent_run_id}
        run = self.client.create_run(record.experiment_id, run_name=f"verdict {record.name}", tags=tags)
        self.run_id = run.info.run_id
        self.client.log_batch(self.run_id, params=[Param("seeds", str(seeds)), Param("epochs", str(epochs)),
                                                   Param("data", str(data))])

    def retrain(self, result: dict) -> str:
        """One finished retrain as a child run: params, per-epoch metrics, ``test_*`` metrics."""
        from mlflow.entities import Metric, Param

        from study.engine.spec import RunSpec

        spec = RunSpec.from_dict(result["spec"])
        tags = {PARENT_TAG: self.run_id, "role": "verdict_retrain", "study": self.record.name,
                "group": spec.model, "seed": str(spec.seed), "source_trial": result.get("source", ""),
                "node": result.get("node", "")}
        run_id = self.client.create_run(self.record.experiment_id, run_name=f"{spec.label()} seed{spec.seed}",
                                        tags=tags).info.run_id
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, int(h["epoch"])) for h in result["history"]
                   for k, v in h.items() if _number(v)]
        metrics += [Metric(f"test_{k}", float(v), now, 0) for k, v in result["test"].items() if _number(v)]
        params = [Param(k, str(v)) for k, v in spec.to_dict().items()]
        for lo in range(0, max(len(metrics), 1), 900):   # MLflow takes at most 1000 per batch
            self.client.log_batch(run_id, metrics=metrics[lo:lo + 900], params=params if lo == 0 else [])
        self.client.set_terminated(run_id, status="FINISHED")
        return run_id

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=status)


def write_report(record, picks, results: list[dict], log: VerdictLog, options, class_names, labels,
                 budget_warning: str | None = None) -> dict:
    """Tables, plot and statement into ``options.out`` and the verdict run; returns the summary."""
    from common.atomic import atomic_dir

    table = retrain_table(results, list(class_names))
    groups = group_summary(table, list(class_names))
    comparison = compare_with_control(results, labels)
    statement = statement_of(groups, comparison, len(set(table.seed)))
    if budget_warning:
        statement += f"\n\n**Warning:** {budget_warning}."
    text = markdown_report(record.name, groups, comparison, picks, class_names, statement,
                           epochs=int(table_epochs(results)), test_images=len(labels))
    out = Path(options.out or Path("runs") / f"{record.name}.verdict")
    with atomic_dir(out, overwrite=True) as folder:
        (folder / "verdict.md").write_text(text)
        table.to_csv(folder / "retrains.csv", index=False)
        groups.to_csv(folder / "groups.csv", index=False)
        comparison.to_csv(folder / "comparison.csv", index=False)
        plot_verdict(table, comparison, folder / "verdict.png", record.name)
        summary = {"study": record.name, "run_id": log.run_id, "statement": statement,
                   "budget_warning": budget_warning,
                   "groups": groups.to_dict("records"), "comparison": comparison.to_dict("records"),
                   "retrains": table.to_dict("records")}
        (folder / "verdict.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
        log.client.log_artifacts(log.run_id, str(folder), artifact_path="verdict")
    _log_headline(log, groups, comparison)
    return {**summary, "out": str(out), "markdown": text}


def table_epochs(results: list[dict]) -> int:
    return max(int(r["spec"]["max_epochs"]) for r in results)


def statement_of(groups, comparison, seeds: int) -> str:
    """The verdict in one or two sentences, saying plainly when a difference is within noise."""
    best = groups.iloc[0]
    spread = "" if math.isnan(best["auc_micro_std"]) else f" +- {best['auc_micro_std']:.3f}"
    lead = f"{best['group']} has the best mean test AUC ({best['auc_micro_mean']:.3f}{spread}, {seeds} seeds)."
    if comparison.empty:
        return lead + " No trivial control was retrained, so there is no comparison."
    parts = []
    for row in comparison.itertuples(index=False):
        interval = f"{row.delta:+.3f} [{row.ci_low:+.3f}, {row.ci_high:+.3f}]"
        parts.append(f"{row.group} {interval}: {_plain_words(row.verdict)}")
    return lead + " Against the trivial control (difference in test AUC, 95% interval): " + "; ".join(parts) + "."


def _plain_words(verdict: str) -> str:
    return {"ahead": "better than the control beyond noise",
            "behind": "worse than the control beyond noise",
            "within noise": "within noise (the interval contains 0)"}[verdict]


def markdown_report(name, groups, comparison, picks, class_names, statement, epochs: int,
                    test_images: int) -> str:
    """The seeds' kind of table: mean +- std over seeds, and the paired difference from trivial."""
    from study.tracking.leaderboard import markdown
    import pandas as pd

    keys = metric_keys(list(class_names))
    headers = {"auc_micro": "AUC (micro)", "acc": "accuracy", "rot_auc_micro": "rotated AUC",
               **{f"auc_{c}": f"AUC {c}" for c in class_names}}
    diff = {row.group: row for row in comparison.itertuples(index=False)}
    rows = []
    for g in groups.itertuples(index=False):
        g = g._asdict()
        row = {"model": g["group"], "configuration": g["config"], "seeds": g["seeds"]}
        row.update({headers[k]: _mean_std(g[f"{k}_mean"], g[f"{k}_std"]) for k in keys})
        d = diff.get(g["group"])
        row["diff. vs trivial [95% CI]"] = (f"{d.delta:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}]" if d
                                            else ("(control)" if g["group"] == "trivial" else "-"))
        row["p (paired t)"] = f"{d.p_t:.2g}" if d and not math.isnan(d.p_t) else "-"
        row["verdict"] = d.verdict if d else "-"
        rows.append(row)
    sources = pd.DataFrame([{"model": c.group, "configuration": c.spec.label(), "from trial": c.source,
                             "trial reached": c.reached} for c in picks])
    return (f"## Verdict of study {name!r}\n\n"
            f"Each group's best configuration (matched-budget ranking), retrained from scratch for "
            f"{epochs} epochs per seed and scored once on the test split ({test_images} images); "
            f"mean +- std over seeds.\n\n{markdown(pd.DataFrame(rows))}\n{statement}\n\n"
            f"### Where the configurations come from\n\n{markdown(sources)}")


def _mean_std(mean: float, std: float) -> str:
    return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f} +- {std:.3f}"


def plot_verdict(table, comparison, path: Path, name: str) -> Path:
    """Left: test AUC of every retrain and the group mean +- std; right: difference from trivial."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = list(table.groupby("group")["auc_micro"].mean().sort_values(ascending=False).index)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, group in enumerate(order):
        values = table.loc[table.group == group, "auc_micro"].to_numpy()
        left.scatter([i] * len(values), values, color="0.6", s=18, zorder=2)
        left.errorbar([i], [values.mean()], yerr=[values.std(ddof=1) if len(values) > 1 else 0],
                      fmt="o", color="C0", capsize=4, zorder=3)
    left.set_xticks(range(len(order)), order)
    left.set_ylabel("test ROC AUC (micro)")
    left.set_title(f"{name}: every retrain (grey), mean +- std (blue)")
    if not comparison.empty:
        y = range(len(comparison))
        low = comparison.delta - comparison.ci_low
        high = comparison.ci_high - comparison.delta
        right.errorbar(comparison.delta, list(y), xerr=[low, high], fmt="o", capsize=4)
        right.set_yticks(list(y), comparison.group)
        right.axvline(0, color="0.4", linestyle="--")
    right.set_xlabel("test AUC minus trivial control (95% interval)")
    right.set_title("paired by seed and test image")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _log_headline(log: VerdictLog, groups, comparison) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = []
    for g in groups.itertuples(index=False):
        metrics.append(Metric(f"{g.group}_test_auc_micro_mean", float(g.auc_micro_mean), now, 0))
        if not math.isnan(g.auc_micro_std):
            metrics.append(Metric(f"{g.group}_test_auc_micro_std", float(g.auc_micro_std), now, 0))
    for row in comparison.itertuples(index=False):
        metrics += [Metric(f"{row.group}_minus_trivial_auc", float(row.delta), now, 0),
                    Metric(f"{row.group}_minus_trivial_ci_low", float(row.ci_low), now, 0),
                    Metric(f"{row.group}_minus_trivial_ci_high", float(row.ci_high), now, 0)]
    log.client.log_batch(log.run_id, metrics=metrics)
    if not groups.empty:
        log.client.set_tag(log.run_id, "winner", str(groups.iloc[0]["group"]))


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)
