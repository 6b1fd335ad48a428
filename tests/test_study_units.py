"""Study pieces on their own: metrics, config validation, Optuna pruning, ASHA persistence."""
from __future__ import annotations

import numpy as np
import optuna
import pytest
from sklearn.metrics import roc_auc_score

from common.errors import UsageError
from study.config import load_config
from study.metrics import classification_metrics
from study.schedulers import PersistentASHA, PruningOptunaSearch
from study.space import define_by_run


def test_three_class_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 20)
    logits = rng.normal(size=(60, 3)) + 1.5 * np.eye(3)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m = classification_metrics(probs, labels, ["no_sub", "cdm", "vortex"])
    onehot = np.eye(3)[labels]
    assert m["auc_micro"] == pytest.approx(roc_auc_score(onehot, probs, average="micro"))
    assert m["auc_macro"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr"))
    assert m["auc_cdm"] == pytest.approx(roc_auc_score(labels == 1, probs[:, 1]))
    assert m["acc"] == pytest.approx(np.mean(probs.argmax(1) == labels))


def test_binary_micro_auc_is_the_positive_class_auc():
    labels = np.array([0, 0, 1, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.8, 0.9])
    m = classification_metrics(np.stack([1 - p, p], 1), labels, ["no_sub", "sub"])
    assert m["auc_micro"] == pytest.approx(roc_auc_score(labels, p))
    assert m["auc_sub"] == pytest.approx(m["auc_micro"])


@pytest.mark.parametrize("override, words", [
    ("tune.trials=0", "tune.trials must be a positive integer"),
    ("train.max_epochs=-1", "train.max_epochs"),
    ("search.lr=[1.0e-2, 1.0e-3]", "empty or inverted"),
    ("search.weight_decay=[0, 1.0e-3]", "positive"),
    ("search.groups=[C5]", "unknown group 'C5'"),
    ("search.groups=[]", "search.groups is empty"),
    ("search.widths=[-1]", "search.widths"),
    ("tune.colour=red", "unknown config key tune.colour"),
    ("tune.trials=many", "tune.trials must be int"),
    ("tune.grace_period=9", "exceeds train.max_epochs"),
    ("tune.metric=val_f1", "tune.metric"),
    ("data.image_size=32", "odd number"),
    ("tune.gpus_per_trial=1.5", "whole number"),
])
def test_bad_config_values_name_the_key(override, words):
    with pytest.raises(UsageError, match=words.replace("[", r"\[").replace("(", r"\(")):
        load_config(None, [override])


def test_missing_and_malformed_config_files(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tune: [unclosed\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_config(bad)


def test_space_is_conditional_on_resnet():
    config = load_config(None, ["search.groups=[resnet18, C8]"])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = []
    for _ in range(12):
        trial = study.ask()
        define_by_run(config.search)(trial)
        seen.append(trial.params)
        study.tell(trial, 0.5)
    assert any(p["model"] == "resnet18" for p in seen) and any(p["model"] == "C8" for p in seen)
    assert all(("width" in p) == (p["model"] != "resnet18") for p in seen)
    assert all(config.search.lr[0] <= p["lr"] <= config.search.lr[1] for p in seen)


def test_stopped_trial_reaches_optuna_as_pruned_with_its_intermediate_values():
    config = load_config(None, [])
    search = PruningOptunaSearch(space=define_by_run(config.search), metric="val_auc_micro", mode="max",
                                 seed=0, max_epochs=4)
    search.set_search_properties(None, None, {})
    for tid in ("full", "stopped"):
        assert search.suggest(tid)["model"] in config.search.groups
    for epoch in (1, 2, 3, 4):
        search.on_trial_result("full", {"val_auc_micro": 0.6 + epoch / 20, "training_iteration": epoch,
                                        "epoch": epoch})
    search.on_trial_complete("full", {"val_auc_micro": 0.8, "epoch": 4, "training_iteration": 4})
    # Tune does not pass the result that made ASHA stop a trial to the searcher, only to on_complete
    search.on_trial_complete("stopped", {"val_auc_micro": 0.55, "epoch": 1, "training_iteration": 1})
    states = {t.number: t for t in search.optuna_study.trials}
    assert states[0].state == optuna.trial.TrialState.COMPLETE and states[0].value == pytest.approx(0.8)
    assert states[1].state == optuna.trial.TrialState.PRUNED
    assert states[1].intermediate_values == {1: pytest.approx(0.55)}


class _Trial:
    def __init__(self, trial_id):
        self.trial_id = trial_id


def _asha(state_file):
    return PersistentASHA(time_attr="epoch", metric="m", mode="max", max_t=4, grace_period=1,
                          reduction_factor=2, state_file=str(state_file))


def test_asha_rung_lists_survive_a_restart(tmp_path):
    """A fresh ASHA reading the saved rungs stops the same weak trial the first one would have."""
    state = tmp_path / "asha.json"
    first = _asha(state)
    for tid, value in (("a", 0.9), ("b", 0.8), ("c", 0.85)):
        first.on_trial_add(None, _Trial(tid))
        first.on_trial_result(None, _Trial(tid), {"epoch": 1, "m": value})
    restarted, forgetful = _asha(state), _asha(tmp_path / "other.json")
    for scheduler in (restarted, forgetful):
        scheduler.on_trial_add(None, _Trial("d"))
    weak = {"epoch": 1, "m": 0.5}
    assert restarted.on_trial_result(None, _Trial("d"), weak) == PersistentASHA.STOP
    assert forgetful.on_trial_result(None, _Trial("d"), weak) == PersistentASHA.CONTINUE
    assert first.rungs() != [{}] and "d" in restarted.rungs()[0]["1"]


def _board(rows):
    import pandas as pd

    from study.leaderboard import LEADERBOARD_COLUMNS

    nan = float("nan")
    columns = LEADERBOARD_COLUMNS + ["auc_micro_at_2", "auc_micro_at_4", "auc_micro_at_8"]
    full = [{**dict.fromkeys(LEADERBOARD_COLUMNS, ""), "auc_micro_at_4": nan, "auc_micro_at_8": nan, **r}
            for r in rows]
    return pd.DataFrame(full, columns=columns).sort_values("best", ascending=False)


def test_a_stopped_trials_early_score_is_never_ranked_against_a_later_rung():
    from study.leaderboard import best_trial, by_group, matched_order

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


def test_scores_per_rung_need_the_rungs_epochs():
    from study.leaderboard import rung_epochs, scores_per_rung

    assert rung_epochs(2, 2, 8) == [2, 4, 8] and rung_epochs(3, 3, 30) == [3, 9, 27, 30]
    history = [(1, 0.5), (2, 0.7), (3, 0.6)]
    assert scores_per_rung(history, [2, 4, 8], "max") == {2: 0.7}
    assert scores_per_rung(history, [2, 4], "min") == {2: 0.5}
