"""Expected best score vs trials per group (Dodge et al. 2019): the estimator, the rung it is
read at, and the flattened / still-rising call."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from study.tracking.expected_best import common_rung, expected_max, group_curves, verdicts


def test_expected_max_equals_the_mean_over_every_draw_with_replacement():
    scores = [0.62, 0.9, 0.71, 0.85]
    for k in (1, 2, 3):
        draws = list(itertools.product(scores, repeat=k))
        assert expected_max(scores, [k])[0] == pytest.approx(sum(map(max, draws)) / len(draws))
    curve = expected_max(scores, range(1, 5))
    assert curve[0] == pytest.approx(np.mean(scores)) and all(np.diff(curve) > 0) and curve[-1] < max(scores)


def _trials(rows):
    return pd.DataFrame([{"model": m, "status": s, "best": b, "auc_micro_at_2": r2, "auc_micro_at_4": r4}
                         for m, s, b, r2, r4 in rows])


def test_curves_are_read_at_the_deepest_rung_every_trial_reached():
    trials = _trials([("C4", "completed", 0.95, 0.80, 0.95), ("C4", "pruned", 0.70, 0.70, math.nan),
                      ("C4", "completed", 0.93, 0.85, 0.93), ("trivial", "pruned", 0.6, 0.6, math.nan),
                      ("trivial", "failed", 0.99, 0.99, 0.99)])      # a failed trial never counts
    assert common_rung(trials[trials.status != "failed"]) == "auc_micro_at_2"
    curves = group_curves(trials)
    c4 = curves[curves.model == "C4"]
    assert list(c4.trials) == [1, 2, 3] and c4.expected.iloc[0] == pytest.approx((0.80 + 0.70 + 0.85) / 3)
    assert (c4.low <= c4.expected + 1e-12).all() and (c4.expected <= c4.high + 1e-12).all()
    assert set(curves.rung) == {"auc_micro_at_2"} and list(curves[curves.model == "trivial"].trials) == [1]


def test_a_group_whose_last_trial_still_helps_is_called_under_tuned():
    rising = pd.DataFrame({"model": "C4", "trials": [1, 2, 3], "expected": [0.80, 0.85, 0.87]})
    flat = pd.DataFrame({"model": "D4", "trials": [1, 2, 3], "expected": [0.90, 0.9105, 0.911]})
    single = pd.DataFrame({"model": "trivial", "trials": [1], "expected": [0.7]})
    lines = verdicts(pd.concat([rising, flat, single]))
    assert "C4: 3 trials" in lines[0] and "still rising: under-tuned" in lines[0]
    assert "D4: 3 trials" in lines[1] and "flattened" in lines[1]
    assert lines[2].startswith("trivial: 1 trial, no curve")
