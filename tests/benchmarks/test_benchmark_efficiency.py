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
def test_each_strategy_replays_through_ray_tune_and_asha_spends_less(shared_ray, tmp_path):
    study = load_config(eff.CONFIG, ["search.groups=[trivial, C4]", "search.widths=[0.0625]"])
    table = eff.CurveTable(_curves())
    runs = {name: eff.replay_once(name, study, table, seed=0, max_trials=20, storage=str(tmp_path))
            for name in eff.STRATEGIES}
    for name, r in runs.items():
        assert 1 <= r["trials"] <= 20
        if math.isfinite(r["trial_epochs"]):
            assert r["trial_epochs"] == r["spent"]   # the run stops at the first result on target
    for name in ("FIFO+TPE", "FIFO+random"):           # FIFO trains every trial to the end
        assert runs[name]["spent"] > 8 * (runs[name]["trials"] - 1)
    table_md = eff.summarise({k: [v] for k, v in runs.items()}, max_epochs=8)
    assert table_md.count("\n") == 1 + len(runs) and "FIFO+random" in table_md


def test_the_model_i_grid_records_every_group_and_resnet_with_two_seeds_and_averages_them(tmp_path):
    config, overrides, _, seeds = eff.LANDSCAPES["model_i"]
    study = load_config(config, overrides)
    grid = eff.grid(study.search, "model_i")
    assert len(grid) == 36 and seeds == (0, 1) and study.train.max_epochs == 12
    assert {c["model"] for c in grid} == {*study.search.groups, "resnet18"}
    assert {(c["weight_decay"], c["batch_size"]) for c in grid} == set(eff.MODEL_I_WD_BS)
    table = tmp_path / "curves.csv"
    table.write_text("model,width,lr,weight_decay,batch_size,seed,epoch,val_auc_micro,epoch_seconds\n"
                     "C4,0.0625,0.001,1e-05,32,0,1,0.5,7\nC4,0.0625,0.001,1e-05,32,0,2,0.7,7\n"
                     "C4,0.0625,0.001,1e-05,32,1,1,0.6,7\nC4,0.0625,0.001,1e-05,32,1,2,0.9,7\n")
    assert set(eff.read_seed_curves(table)) == {(("C4", 0.0625, 0.001, 1e-05, 32), s) for s in (0, 1)}
    (curve,) = eff.read_curves(table).values()
    assert curve == pytest.approx([0.55, 0.8])


def test_committed_model_i_curves_cover_its_grid_with_both_seeds():
    config, overrides, path, seeds = eff.LANDSCAPES["model_i"]
    study = load_config(config, overrides)
    runs = eff.read_seed_curves(path)
    assert set(runs) == {(eff._key(c), s) for c in eff.grid(study.search, "model_i") for s in seeds}
    assert {len(c) for c in runs.values()} == {12} and all(0.3 <= v <= 1.0 for c in runs.values() for v in c)
