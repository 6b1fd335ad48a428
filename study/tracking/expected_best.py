"""Expected best validation score against the number of trials, per group (Dodge et al. 2019).

"Show Your Work: Improved Reporting of Experimental Results" (Dodge, Gururangan, Card, Schwartz,
Smith; EMNLP 2019, https://arxiv.org/abs/1909.03004) reports, for each model, the expected maximum
validation score of ``k`` configurations drawn from its search: with the ``n`` scores of its trials
sorted, ``v_(1) <= ... <= v_(n)``,

    E[max of k] = sum_i v_(i) ((i/n)^k - ((i-1)/n)^k),    k = 1 .. n.

A curve that is still rising at ``k = n`` means the group is under-tuned at this budget (one more
trial is expected to find a better configuration); a flat one means more trials would not help.
Scores are taken at the deepest ASHA rung every trial reached, so a pruned trial counts with the
score it had when it was judged, like a completed one (the band: 5-95% of a bootstrap over the
group's trials). The study writes ``expected_best.png``, ``.csv`` and ``.md`` to its results.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

FLAT = 0.002        # expected gain of the last trial below which a curve counts as flattened
BOOTSTRAP = 1000


def expected_max(scores, ks) -> np.ndarray:
    """E[max of k scores drawn with replacement from ``scores``] for each k in ``ks``."""
    v = np.sort(np.asarray(scores, dtype=float))
    n = len(v)
    i = np.arange(1, n + 1)
    return np.array([float(np.sum(v * ((i / n) ** k - ((i - 1) / n) ** k))) for k in ks])


def common_rung(trials: pd.DataFrame) -> str | None:
    """The deepest ``*_at_<r>`` column every trial has a score in (None: no rung columns)."""
    from study.tracking.leaderboard import rung_columns

    full = [c for c in rung_columns(trials) if trials[c].notna().all()]
    return full[-1] if full else None


def group_curves(trials: pd.DataFrame, mode: str = "max", seed: int = 0) -> pd.DataFrame:
    """One row per group and k: ``expected``, ``low``, ``high`` (bootstrap band) and ``rung``."""
    from study.tracking.leaderboard import FINISHED

    scored = trials[trials.status.isin(FINISHED)]
    rung = common_rung(scored)
    column = rung or "best"
    sign = 1.0 if mode == "max" else -1.0
    rng = np.random.default_rng(seed)
    rows = []
    for model, group in scored.groupby("model", sort=False):
        scores = sign * group[column].dropna().to_numpy(dtype=float)
        if len(scores) == 0:
            continue
        ks = np.arange(1, len(scores) + 1)
        boot = np.array([expected_max(rng.choice(scores, len(scores)), ks) for _ in range(BOOTSTRAP)])
        expected = expected_max(scores, ks)
        for k, e, lo, hi in zip(ks, expected, *np.percentile(boot, [5, 95], axis=0)):
            rows.append({"model": model, "trials": int(k), "expected": sign * e, "low": sign * lo,
                         "high": sign * hi, "rung": column})
    return pd.DataFrame(rows, columns=["model", "trials", "expected", "low", "high", "rung"])


def verdicts(curves: pd.DataFrame, mode: str = "max") -> list[str]:
    """One line per group: has its curve flattened at its budget, or is it still rising?"""
    lines = []
    for model, curve in curves.groupby("model", sort=False):
        values = curve.sort_values("trials")["expected"].to_numpy()
        n = len(values)
        if n < 2:
            lines.append(f"{model}: 1 trial, no curve; tune it more before comparing it")
            continue
        gain = (values[-1] - values[-2]) * (1 if mode == "max" else -1)
        state = ("flattened: more trials would not help" if gain < FLAT
                 else "still rising: under-tuned at this budget")
        lines.append(f"{model}: {n} trials, expected best {values[-1]:.4f}, last trial adds {gain:+.4f} ({state})")
    return lines


def write_expected_best(trials: pd.DataFrame, folder: Path, metric: str, mode: str = "max") -> list[str]:
    """``expected_best.csv`` and ``expected_best.png`` into ``folder``; returns the per-group lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = group_curves(trials, mode)
    if curves.empty:
        return []
    curves.to_csv(folder / "expected_best.csv", index=False)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for model, curve in curves.groupby("model", sort=False):
        line, = ax.plot(curve.trials, curve.expected, marker="o", label=model)
        ax.fill_between(curve.trials, curve.low, curve.high, color=line.get_color(), alpha=0.15)
    rung = curves.rung.iloc[0]
    where = f"at {rung.rsplit('_', 1)[1]} epochs" if "_at_" in rung else "any epoch"
    ax.set(xlabel="trials of the group", ylabel=f"expected best {metric} ({where})",
           title="Expected best score vs trials (Dodge et al. 2019); band: 5-95% bootstrap")
    ax.legend(fontsize=8)
    ax.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    fig.savefig(folder / "expected_best.png", dpi=110)
    plt.close(fig)
    lines = verdicts(curves, mode)
    (folder / "expected_best.md").write_text(
        "## Expected best score vs trials per group\n\n" + "".join(f"- {line}\n" for line in lines))
    return lines
