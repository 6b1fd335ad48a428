"""The verdict's statistics: per-group mean and spread over seeds, and each group against the control.

Retrain ``k`` of every group uses the same seed, so groups are compared **seed by seed** on the
**same test images**. For a group G and the trivial control T with test probabilities
``P_G[k]``, ``P_T[k]`` (k = 1..K seeds) the difference is

    delta = mean_k ( AUC(P_G[k]) - AUC(P_T[k]) )          (micro ROC AUC, study.engine.metrics)

and its 95% interval comes from a paired bootstrap over both sources of noise: each resample
draws K seeds with replacement and the N test images with replacement (the same images for G
and T), and recomputes delta; the interval is the 2.5 and 97.5 percentiles of ``n_boot``
resamples. A paired t-test over the K seed differences gives ``p_t`` (NaN for K = 1). The words:
``ahead`` / ``behind`` when the interval excludes 0, else ``within noise``.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from study.engine.metrics import micro_auc

N_BOOT = 1000


def metric_keys(class_names: list[str]) -> list[str]:
    """The verdict's test metrics: micro AUC, one-vs-rest AUC per class, accuracy, rotated AUC."""
    return ["auc_micro", *(f"auc_{c}" for c in class_names), "acc", "rot_auc_micro"]


def retrain_table(results: list[dict], class_names: list[str]) -> pd.DataFrame:
    """One row per retrain: group, seed, the configuration's label and its test metrics."""
    from study.engine.spec import RunSpec

    rows = []
    for r in results:
        spec = RunSpec.from_dict(r["spec"])
        rows.append({"group": spec.model, "seed": spec.seed, "config": spec.label(),
                     "source": r.get("source", ""), "reached": r.get("reached", ""),
                     **{k: float(r["test"][k]) for k in metric_keys(class_names)},
                     "seconds": float(r.get("seconds", math.nan))})
    return pd.DataFrame(rows).sort_values(["group", "seed"], kind="stable").reset_index(drop=True)


def group_summary(table: pd.DataFrame, class_names: list[str]) -> pd.DataFrame:
    """Per group: seeds, and mean / std (ddof 1; NaN for one seed) of every verdict metric."""
    keys = metric_keys(class_names)
    rows = []
    for group, block in table.groupby("group", sort=False):
        row = {"group": group, "config": block["config"].iloc[0], "seeds": len(block)}
        for k in keys:
            row[f"{k}_mean"] = float(block[k].mean())
            row[f"{k}_std"] = float(block[k].std(ddof=1)) if len(block) > 1 else math.nan
        rows.append(row)
    out = pd.DataFrame(rows)
    return out.sort_values("auc_micro_mean", ascending=False, kind="stable").reset_index(drop=True)


def paired_difference(probs_g: np.ndarray, probs_t: np.ndarray, labels: np.ndarray,
                      n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """``delta``, ``ci_low``, ``ci_high``, ``p_t`` and ``verdict`` for probabilities ``[K, N, C]``."""
    from scipy import stats

    k_seeds, n_images, n_classes = probs_g.shape
    labels = np.asarray(labels)
    per_seed = np.array([micro_auc(probs_g[k], labels, n_classes) - micro_auc(probs_t[k], labels, n_classes)
                         for k in range(k_seeds)])
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=n_boot)   # images drawn
    seeds = rng.integers(k_seeds, size=(n_boot, k_seeds))                                # seeds drawn
    auc_diff = np.stack([bootstrap_micro_auc(probs_g[k], labels, counts)
                         - bootstrap_micro_auc(probs_t[k], labels, counts) for k in range(k_seeds)], axis=1)
    boot = np.take_along_axis(auc_diff, seeds, axis=1).mean(axis=1)
    low, high = np.nanpercentile(boot, [2.5, 97.5])
    p_t = float(stats.ttest_rel(per_seed, np.zeros(k_seeds)).pvalue) if k_seeds > 1 else math.nan
    return {"delta": float(per_seed.mean()), "ci_low": float(low), "ci_high": float(high),
            "p_t": p_t, "verdict": _words(low, high)}


def bootstrap_micro_auc(probs: np.ndarray, labels: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Micro AUC (as :func:`study.engine.metrics.micro_auc`) of ``B`` resamples at once, ``[B]``.

    ``counts[b, i]`` is how often resample ``b`` drew image ``i``. The AUC of a resample is the
    weighted Mann-Whitney statistic: for every positive (image, class) pair, the weight of the
    negatives scored below it plus half of those tied with it. sklearn's ``roc_auc_score`` with
    ``sample_weight`` gives the same numbers (tests check) at about 1000x the time for B = 1000.
    """
    n_classes = probs.shape[1]
    onehot = np.eye(n_classes, dtype=bool)[labels]
    if n_classes == 2:
        scores, truth, weights = probs[:, 1], onehot[:, 1], counts
    else:
        scores, truth, weights = probs.ravel(), onehot.ravel(), np.repeat(counts, n_classes, axis=1)
    order = np.argsort(scores, kind="stable")
    scores, truth, weights = scores[order], truth[order], weights[:, order].astype(np.float64)
    negative, positive = weights * ~truth, weights * truth
    _, start, tie_group = np.unique(scores, return_index=True, return_inverse=True)
    before = (np.cumsum(negative, axis=1) - negative)[:, start]       # negatives below each tie group
    tied = np.add.reduceat(negative, start, axis=1)
    below = before[:, tie_group] + 0.5 * tied[:, tie_group]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (positive * below).sum(axis=1) / (positive.sum(axis=1) * negative.sum(axis=1))


def _words(low: float, high: float) -> str:
    if low > 0:
        return "ahead"
    if high < 0:
        return "behind"
    return "within noise"


def compare_with_control(results: list[dict], labels: np.ndarray, control: str = "trivial",
                         n_boot: int = N_BOOT) -> pd.DataFrame:
    """Each group against ``control`` (see the module docstring), paired on the seeds both have."""
    by_group: dict[str, dict[int, np.ndarray]] = {}
    for r in results:
        by_group.setdefault(r["spec"]["model"], {})[int(r["spec"]["seed"])] = np.asarray(r["probs"])
    if control not in by_group:
        return pd.DataFrame(columns=["group", "seeds", "delta", "ci_low", "ci_high", "p_t", "verdict"])
    rows = []
    for group, runs in by_group.items():
        if group == control:
            continue
        seeds = sorted(set(runs) & set(by_group[control]))
        if not seeds:
            continue
        diff = paired_difference(np.stack([runs[s] for s in seeds]),
                                 np.stack([by_group[control][s] for s in seeds]),
                                 np.asarray(labels), n_boot=n_boot)
        rows.append({"group": group, "seeds": len(seeds), **diff})
    return pd.DataFrame(rows).sort_values("delta", ascending=False, kind="stable").reset_index(drop=True)
