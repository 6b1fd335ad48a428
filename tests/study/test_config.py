"""The study configuration: every bad value names its key and the fix."""
from __future__ import annotations

import pytest

from common.errors import UsageError
from study.config import TrainConfig, config_from_dict, load_config


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
    ("tune.trials='8'", "tune.trials must be int; got '8'"),           # strict: a quoted number is text
    ("search.widths=[0.25, wide]", "search.widths[1] must be float"),
    ("search.widths=0.5", "search.widths must be a list, e.g. [0.25, 0.5]"),
    ("data.simulate.colour=red", "unknown config key data.simulate.colour; known keys here: preset, per_class"),
    ("train.optimizer=sgd", "train.optimizer 'sgd' is unknown; use one of adamw, adam"),
    ("tune=3", "config section tune must be a mapping"),
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


def test_yaml_numbers_sections_and_saved_configs_round_trip(tmp_path):
    config = load_config(None, ["search.lr=[1e-4, 1e-2]", "data.simulate=null", "train="])
    assert config.search.lr == [1e-4, 1e-2]          # YAML 1.1 would read 1e-4 as a string
    assert config.data.simulate is None and config.train == TrainConfig()
    assert config_from_dict(config.to_dict()) == config
    with pytest.raises(UsageError, match="^config key tune.trials must be int; got 2.5$"):
        config_from_dict({**config.to_dict(), "tune": {"trials": 2.5}})
