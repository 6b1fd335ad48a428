"""The leaderboard: scores per rung, and the one rule for the best trial."""
from __future__ import annotations

def _board(rows):
    import pandas as pd

    from study.tracking.leaderboard import LEADERBOARD_COLUMNS

    nan = float("nan")
    columns = LEADERBOARD_COLUMNS + ["auc_micro_at_2", "auc_micro_at_4", "auc_micro_at_8"]
    full = [{**dict.fromkeys(LEADERBOARD_COLUMNS, ""), "auc_micro_at_4": nan, "auc_micro_at_8": nan, **r}
            for r in rows]
    return pd.DataFrame(full, columns=columns).sort_values("best", ascending=False)


def test_a_stopped_trials_early_score_is_never_ranked_against_a_later_rung():
    from study.tracking.leaderboard import best_trial, by_group, matched_order

    trials = _board([
        {"trial": "trivial early", "model": "trivial", "status": "pruned", "epochs": 2, "best": 0.97,
         "auc_micro_at_2": 0.97},
        {"trial": "C4 full", "model": "C4", "status": "completed", "epochs": 8, "best": 0.90,
         "auc_micro_at_2": 0.70, "auc_micro_at_4": 0.85, "auc_micro_at_8": 0.90},
        {"trial": "C4 at 4", "model": "C4", "status": "pruned", "epochs": 4, "best": 0.88,
         "auc_micro_at_2": 0.75, "auc_micro_at_4": 0.88},
        {"trial": "D4 failed", "model": "D4", "status": "failed", "epochs": 8, "best": 0.99,
         "auc_micro_at_2": 0.99, "auc_micro_at_4": 0.99, "auc_micro_at_8": 0.99},
    ])
    assert list(matched_order(trials).trial) == ["D4 failed", "C4 full", "C4 at 4", "trivial early"]
    assert best_trial(trials)["trial"] == "C4 full"     # not the higher early score, not a failure
    groups = by_group(trials).set_index("model")
    assert list(groups.index) == ["D4", "C4", "trivial"]
    assert groups.loc["C4", "auc_micro_at_2"] == 0.75 and groups.loc["C4", "auc_micro_at_4"] == 0.88
    assert groups.loc["trivial", "auc_micro_at_2"] == 0.97
    assert groups.loc["trivial", ["auc_micro_at_4", "auc_micro_at_8"]].isna().all()
    assert groups.loc["trivial", "reached"] == "pruned at epoch 2"
    assert groups.loc["C4", "reached"] == "completed at epoch 8"
    assert groups.loc["C4", "trials"] == 2 and groups.loc["C4", "trial_epochs"] == 12
    assert list(groups.columns[:3]) == ["trials", "trial_epochs", "auc_micro_at_2"]


def test_unequal_tuning_budgets_are_named_and_equal_ones_pass():
    import pandas as pd

    from study.tracking.leaderboard import unequal_budgets

    trials = pd.DataFrame({"model": ["C4", "C4", "trivial", "trivial"], "epochs": [8, 2, 8, 2]})
    assert unequal_budgets(trials, ["C4", "trivial"]) is None
    warning = unequal_budgets(trials.iloc[:3], ["C4", "trivial"])
    assert warning.startswith("unequal tuning budgets (C4 2 trials / 10 trial-epochs, trivial 1 trials / "
                              "8 trial-epochs)") and "search.allocation=equal" in warning
    assert unequal_budgets(trials, ["C4", "trivial", "D4"]).count("D4 0 trials") == 1
    # the same trials, one group's second trial stopped earlier: unequal trial-epochs, unless every
    # group had rungs of its own (then it only lost to its own group's first trial)
    shorter = trials.assign(epochs=[8, 2, 8, 6])
    assert unequal_budgets(shorter, ["C4", "trivial"]).startswith("unequal tuning budgets")
    assert unequal_budgets(shorter, ["C4", "trivial"], per_group_stopping=True) is None
    assert unequal_budgets(trials.iloc[:3], ["C4", "trivial"], per_group_stopping=True) is not None
    # a control the verdict adds was never searched: the fix is search.groups, not the allocation
    unsearched = unequal_budgets(trials, ["C4", "trivial", "D4"], per_group_stopping=True)
    assert unsearched.endswith("reason alone; D4 had no trials: add it to search.groups to tune it")


def test_scores_per_rung_need_the_rungs_epochs():
    from study.tracking.leaderboard import rung_epochs, scores_per_rung

    assert rung_epochs(2, 2, 8) == [2, 4, 8] and rung_epochs(3, 3, 30) == [3, 9, 27, 30]
    history = [(1, 0.5), (2, 0.7), (3, 0.6)]
    assert scores_per_rung(history, [2, 4, 8], "max") == {2: 0.7}
    assert scores_per_rung(history, [2, 4], "min") == {2: 0.5}
