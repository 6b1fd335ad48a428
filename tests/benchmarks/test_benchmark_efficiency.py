"""benchmarks/study_efficiency.py: the curve table, and one replay per strategy through real Ray Tune."""
import importlib.util
import math

import pytest

from tests.support.tiny_studies import ROOT
from study.config import load_config

_spec = importlib.util.spec_from_file_location("study_efficiency", ROOT / "benchmarks" / "study_efficiency.py")
eff = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(eff)


def _curves():
    """Hand-made curves: C4 at lr 3e-3 is the one configuration that reaches the top; the others
    plateau lower, each at its own level (ASHA keeps ties, so no two share a curve)."""
    curves = {}
    for m, model in enumerate(("trivial", "C4")):
        for i, lr in enumerate(eff.GRID_LR):
            for wd in eff.GRID_WD:
                for j, bs in enumerate((32, 64)):
                    top = 0.95 if (model, lr) == ("C4", 3e-3) else 0.70 + 0.1 * m + 0.02 * i + 0.01 * j
                    curves[(model, 0.0625, lr, wd, bs)] = [top - 0.3 / e for e in range(1, 9)]
    return curves


def test_nearest_configuration_is_same_model_and_batch_nearest_in_log_space():
    table = eff.CurveTable(_curves())
    key = table.nearest({"model": "C4", "width": 0.1, "lr": 1.4e-3, "weight_decay": 2e-4, "batch_size": 64})
    assert key == ("C4", 0.0625, 1e-3, 3e-5, 64)
    key = table.nearest({"model": "trivial", "width": 0.0625, "lr": 4e-4, "weight_decay": 2e-6, "batch_size": 32})
    assert key == ("trivial", 0.0625, 3e-4, 3e-5, 32)
    assert table.best == pytest.approx(0.95 - 0.3 / 8)
    with pytest.raises(KeyError, match="D8"):
        table.nearest({"model": "D8", "width": 0.0625, "lr": 1e-3, "weight_decay": 1e-5, "batch_size": 32})


def test_committed_curves_cover_the_grid_of_the_default_study():
    study = load_config(eff.CONFIG)
    curves = eff.read_curves(eff.CURVES)
    assert set(curves) == {eff._key(c) for c in eff.grid(study.search)}
    assert {len(c) for c in curves.values()} == {study.train.max_epochs}
    assert all(0.3 <= v <= 1.0 for c in curves.values() for v in c)


def test_first_trial_floor_is_the_chance_that_a_random_first_draw_reaches_the_target():
    study = load_config(eff.CONFIG, ["search.groups=[trivial, C4]", "search.widths=[0.0625]"])
    floor = eff.first_trial_floor(eff.CurveTable(_curves()), study, tolerance=0.01, draws=2000)
    # only C4 (1/2) at an lr nearest 3e-3 (the top 0.5 ln 3 of the ln 10 log range: 0.239) reaches it
    assert floor["p_first"] == pytest.approx(0.5 * 0.5 * math.log(3) / math.log(10), abs=0.03)
    assert floor["earliest"] == 7                       # 0.95 - 0.3/e >= 0.9025 from epoch 7
    assert floor["floor"] == 8 + 7 - 1
    assert eff.CurveTable(_curves()).rank_correlation(1) == pytest.approx(1.0)   # same order every epoch


@pytest.mark.slow
def test_each_strategy_replays_through_ray_tune_and_names_the_one_good_group(shared_ray, tmp_path):
    from search_strategies import STRATEGIES

    study = load_config(eff.CONFIG, ["search.groups=[trivial, C4]", "search.widths=[0.0625]"])
    table = eff.CurveTable(_curves())
    assert table.right_groups() == {"C4"}
    runs = {name: eff.replay_once(name, study, table, seed=0, max_trials=20, storage=str(tmp_path),
                                  budgets=(24, 48)) for name in STRATEGIES}
    for name, r in runs.items():
        assert 1 <= r["trials"] <= 20, name
        assert r["to"][0.01] <= r["to"][0.005] <= r["spent"] or r["trials"] == 20, name
        assert set(r["named"]) == {24, 48} and r["named"][48] in {"trivial", "C4"}, name
        # it stops once it has every answer: at the later of the last target and the last budget
        if r["trials"] < 20:
            assert r["spent"] == max(48, r["to"][0.005]), name
    assert runs["FIFO+random"]["spent"] > 8 * (runs["FIFO+random"]["trials"] - 1)   # no early stops
    assert runs["ASHA+TPE"]["named"][48] == "C4"
    results = {k: [v, v] for k, v in runs.items()}
    assert eff.efficiency_table(results).count("\n") == 1 + len(runs)
    assert eff.naming_table(results, {"C4"}, {24: "1/8", 48: "1/4"}).count("\n") == 1 + len(runs)


def test_equal_allocation_replays_round_robin_over_the_groups(shared_ray, tmp_path):
    study = load_config(eff.CONFIG, ["search.groups=[trivial, C4]", "search.widths=[0.0625]"])
    run = eff.replay_once("ASHA+random/equal", study, eff.CurveTable(_curves()), seed=1, max_trials=6,
                          storage=str(tmp_path), budgets=(10_000,))
    assert run["trials"] == 6      # never done: it runs out of trials, three per group


def test_named_group_follows_the_leaderboard_rule_deepest_rung_first():
    history = {"a": ("trivial", [(1, 0.99)]),                        # best score, one epoch only
               "b": ("C4", [(1, 0.6), (2, 0.7), (3, 0.8)]),
               "c": ("D4", [(1, 0.7), (2, 0.75), (3, 0.79)])}
    assert eff.named_group(history, [1, 3]) == "C4"
    assert eff.named_group({}, [1, 3]) is None


def test_a_replayed_trial_sees_one_recorded_seed_the_same_one_each_time():
    key = ("C4", 0.0625, 1e-3, 3e-5, 32)
    table = eff.CurveTable({key: [0.5, 0.6]}, {key: [[0.4, 0.5], [0.6, 0.7]]})
    config = {"model": "C4", "width": 0.0625, "lr": 1e-3, "weight_decay": 3e-5, "batch_size": 32}
    seen = {tuple(table.observed(config, rep)) for rep in range(40)}
    assert seen == {(0.4, 0.5), (0.6, 0.7)}
    assert table.observed(config, 3) == table.observed(dict(config), 3)
    assert table.group_finals() == {"C4": 0.6}


def test_intervals():
    lo, hi = eff.wilson(9, 10)
    assert lo == pytest.approx(0.596, abs=1e-3) and hi == pytest.approx(0.982, abs=1e-3)
    m, lo, hi = eff.bootstrap_median([1, 2, 3, 4, 100])
    assert m == 3 and 1 <= lo <= 3 <= hi <= 100
    r, lo, hi = eff.bootstrap_ratio([2] * 5, [4] * 5)
    assert r == lo == hi == 0.5
    assert eff.bootstrap_median([1, math.inf, math.inf])[0] == math.inf


def test_progressive_asha_raises_its_maximum_only_while_the_top_ranks_change():
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler
    from search_strategies import ProgressiveASHA

    pasha = ProgressiveASHA(time_attr="epoch", metric="auc", mode="max", max_t=12, grace_period=1,
                            reduction_factor=2)
    assert pasha.milestones == [1, 2, 4, 8] and pasha.top == 1      # first maximum: epoch 2

    def run(trial_id, values):
        trial = SimpleNamespace(trial_id=trial_id, config={"model": "C4"})
        pasha.on_trial_add(None, trial)
        for epoch, v in enumerate(values, 1):
            decision = pasha.on_trial_result(None, trial, {"epoch": epoch, "auc": v})
            if decision == TrialScheduler.STOP:
                return epoch
        return len(values)

    assert run("a", [0.6, 0.7, 0.8]) == 2                  # alone at the top rung: stop there
    assert run("b", [0.7, 0.8, 0.9]) == 2                  # same order at epochs 1 and 2: stop
    # c is last at epoch 1, first at epoch 2: the ranks changed, the maximum rises to epoch 4
    assert run("c", [0.65, 0.9, 0.9, 0.92, 0.95]) == 4 and pasha.top == 2
    # d passes c between epochs 2 and 4: the maximum rises to 8, where d is alone
    assert run("d", [0.66, 0.85, 0.9, 0.93, 0.93, 0.93, 0.93, 0.94, 0.95]) == 8 and pasha.top == 3


def test_the_closing_lines_give_the_default_and_the_floor_that_blocks_the_goal():
    def run(to_01, to_005, named):
        return {"to": {0.01: to_01, 0.005: to_005}, "named": {108: named}}

    results = {"FIFO+random": [run(40, 80, "C4")] * 4,
               "ASHA+TPE": [run(30, 60, "C4")] * 3 + [run(30, 60, "trivial")]}
    floors = {0.01: {"floor": 18, "p_first": 0.2, "earliest": 7}, 0.005: {"floor": 30, "p_first": 0.1, "earliest": 9}}
    text = eff.verdict_lines(results, {"C4"}, {108: "1/4"}, floors)
    first, second, third = text.splitlines()
    assert "ASHA+TPE, needs 75% [75%, 75%]" in first and "floor of 18 that 80% of runs" in first
    assert "floor" not in second                      # 40% of 80 = 32 > 30: the floor does not block it
    assert third.startswith("the default, ASHA+TPE, names a right group in 3/4 replays (75%")
