"""One default per setting: a run's fixed settings default to the study configuration's own."""
from __future__ import annotations

import ast
import dataclasses

from study.config import DataConfig, StudyConfig, TrainConfig
from study.engine.spec import RunSpec
from tests.support.tiny_studies import ROOT

#: RunSpec field -> the configuration section that owns its default
OWNERS = {"seed": StudyConfig, **{name: DataConfig for name in DataConfig.model_fields},
          **{name: TrainConfig for name in TrainConfig.model_fields}}


def test_every_mirrored_setting_takes_the_configs_default_and_restates_none():
    source = ast.parse((ROOT / "study" / "engine" / "spec.py").read_text())
    (spec_class,) = [n for n in source.body if isinstance(n, ast.ClassDef) and n.name == "RunSpec"]
    restated = []
    for stmt in spec_class.body:
        if isinstance(stmt, ast.AnnAssign) and stmt.value is not None and stmt.target.id in OWNERS:
            if isinstance(stmt.value, ast.Constant):    # a literal: a second default for the same setting
                restated.append(stmt.target.id)
    assert restated == [], f"RunSpec restates the config's defaults of {restated}; take them from study/config.py"
    for field in dataclasses.fields(RunSpec):
        if field.name in OWNERS and field.default is not dataclasses.MISSING:
            assert field.default == getattr(OWNERS[field.name](), field.name), field.name


def test_a_spec_built_from_the_default_config_equals_one_built_without_it():
    from study.config import load_config
    from study.search.space import run_spec

    sampled = {"model": "C4", "width": 0.125, "lr": 1e-3, "weight_decay": 1e-5, "batch_size": 32}
    config = StudyConfig()      # the model's defaults (configs/local.yaml may choose others)
    assert run_spec(sampled, config) == RunSpec(**sampled, max_epochs=config.train.max_epochs)
    assert run_spec(sampled, load_config(None)).width_mode == "channels"
