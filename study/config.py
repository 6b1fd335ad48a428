"""The study configuration: typed dataclasses, loaded from YAML, overridden by ``--set key=value``.

A config file has five sections (see ``configs/local.yaml``); every key is a field below. Unknown
keys, wrong types, empty or inverted ranges and impossible counts raise
:class:`common.errors.UsageError` naming the key and the fix, before anything starts.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from common.errors import UsageError
from lensnets.config import MEMORY_MODES, MODEL_NAMES

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "local.yaml"
MEMORY_CHOICES = ("auto",) + MEMORY_MODES   # auto: lean on CUDA, plain on CPU
METRICS = ("val_auc_micro", "val_auc_macro", "val_acc", "val_loss")


@dataclass
class SimulateConfig:
    preset: str = "small64"
    per_class: int = 600


@dataclass
class DataConfig:
    path: str = "data/small64"
    simulate: SimulateConfig | None = field(default_factory=SimulateConfig)
    image_size: int = 33          # side of the (odd) square image the model sees
    crop_fraction: float = 1.0    # central crop before resizing (128/150 for DeepLense 150-px sets)
    rotate: bool = True           # random-rotation augmentation during training
    flip: bool = False            # random horizontal flips during training


@dataclass
class SearchConfig:
    groups: list[str] = field(default_factory=lambda: ["trivial", "C4", "C8", "D4", "D8", "resnet18"])
    widths: list[float] = field(default_factory=lambda: [0.0625, 0.125])
    lr: list[float] = field(default_factory=lambda: [3e-4, 3e-3])             # log-uniform [lo, hi]
    weight_decay: list[float] = field(default_factory=lambda: [1e-6, 1e-3])   # log-uniform [lo, hi]
    batch_sizes: list[int] = field(default_factory=lambda: [32, 64])


@dataclass
class TrainConfig:
    max_epochs: int = 8
    optimizer: str = "adamw"      # "adamw" (decoupled weight decay) or "adam" (L2 in the gradient)
    head: str = "invariant"       # "invariant" or "flatten" (the seed's head)
    width_mode: str = "channels"  # how lensnets scales width across groups (see lensnets/config.py)
    amp: bool = True              # bfloat16 autocast on CUDA where the GPU has it; ignored on CPU
    memory: str = "auto"          # "lean" (checkpointed blocks), "plain", or "auto": lean on CUDA
    memory_budget_gb: float | None = None   # GiB a trial may use; null: the GPU's free memory
                                            # (its share for gpus_per_trial < 1), no limit on CPU
    channels_last: bool | None = None       # NHWC tensors; null: on CUDA only


@dataclass
class TuneConfig:
    trials: int = 16
    max_concurrent: int = 2
    grace_period: int = 2         # ASHA's first rung, in epochs
    reduction_factor: int = 2     # ASHA keeps the top 1/reduction_factor at each rung
    metric: str = "val_auc_micro"
    mode: str = "max"
    cpus_per_trial: float = 1
    gpus_per_trial: float = 0
    max_failures: int = 2
    storage_path: str = "runs"
    reuse_actors: bool | str = "auto"   # one actor runs trial after trial; auto: on a one-node cluster


@dataclass
class MlflowConfig:
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str | None = None   # defaults to the study name


@dataclass
class StudyConfig:
    name: str = "lens-study"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)

    @property
    def experiment(self) -> str:
        return self.mlflow.experiment or self.name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- loading


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> StudyConfig:
    """Read a YAML config (the shipped default when ``path`` is None), apply overrides, validate."""
    path = Path(path) if path else DEFAULT_CONFIG
    if not path.is_file():
        raise UsageError(f"config file {path} does not exist; pass an existing YAML file to --config")
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as err:
        raise UsageError(f"config file {path} is not valid YAML ({_first_line(err)}); fix its syntax")
    if not isinstance(raw, dict):
        raise UsageError(f"config file {path} must hold a mapping of sections, not {type(raw).__name__}")
    for item in overrides:
        _apply_override(raw, item)
    config = _build(StudyConfig, raw, where="")
    validate(config)
    return config


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a key given twice in one mapping (plain YAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        twice = sorted({str(k) for k in keys if keys.count(k) > 1})
        if twice:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {twice[0]!r} is given twice; give each key once", node.start_mark)
        return super().construct_mapping(node, deep=deep)


def config_from_dict(raw: dict) -> StudyConfig:
    """Rebuild a config saved with :meth:`StudyConfig.to_dict` (e.g. from an MLflow artifact)."""
    config = _build(StudyConfig, raw, where="")
    validate(config)
    return config


def _apply_override(raw: dict, item: str) -> None:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--set {item!r} is not key=value; write e.g. --set tune.trials=8")
    *parents, leaf = key.strip().split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UsageError(f"--set {key}: {part} is not a section")
    try:
        node[leaf] = yaml.safe_load(text)
    except yaml.YAMLError:
        node[leaf] = text


def _build(cls, raw: Any, where: str):
    """Build dataclass ``cls`` from a mapping, checking every key and value type."""
    if not isinstance(raw, dict):
        raise UsageError(f"config section {where.rstrip('.') or 'top level'} must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise UsageError(
            f"unknown config key {where}{unknown[0]}; known keys here: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    values = {name: _coerce(hints[name], value, f"{where}{name}") for name, value in raw.items()}
    return cls(**values)


def _coerce(hint, value, key: str):
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None and type(None) in typing.get_args(hint):
            return None
        for option in options[:-1]:   # the first type that takes the value; the last one's error
            try:
                return _coerce(option, value, key)
            except UsageError:
                pass
        return _coerce(options[-1], value, key)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value or {}, where=f"{key}.")
    if origin is list:
        if not isinstance(value, list):
            raise UsageError(f"config key {key} must be a list, e.g. [{_example(hint)}]; got {value!r}")
        (item_type,) = typing.get_args(hint)
        return [_coerce(item_type, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint is str and isinstance(value, str):
        return value
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    raise UsageError(f"config key {key} must be {hint.__name__}; got {value!r}")


def _example(hint) -> str:
    (item_type,) = typing.get_args(hint)
    return {float: "0.25, 0.5", int: "32, 64", str: "C4, C8"}.get(item_type, "...")


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0]


# ----------------------------------------------------------------------------- validation


def validate(config: StudyConfig) -> None:
    """Reject values that parse but cannot work, with the key and the fix in the message."""
    _check_search(config.search)
    t, tr, d = config.tune, config.train, config.data
    _positive("train.max_epochs", tr.max_epochs)
    _positive("tune.trials", t.trials)
    _positive("tune.max_concurrent", t.max_concurrent)
    _positive("tune.grace_period", t.grace_period)
    if t.grace_period > tr.max_epochs:
        raise UsageError(
            f"tune.grace_period ({t.grace_period}) exceeds train.max_epochs ({tr.max_epochs}); "
            "lower grace_period or raise max_epochs"
        )
    if t.reduction_factor < 2:
        raise UsageError("tune.reduction_factor must be >= 2 (ASHA keeps 1/reduction_factor per rung)")
    if t.metric not in METRICS:
        raise UsageError(f"tune.metric {t.metric!r} is unknown; use one of {', '.join(METRICS)}")
    if t.mode not in ("max", "min"):
        raise UsageError(f"tune.mode must be max or min, not {t.mode!r}")
    if t.cpus_per_trial <= 0 or t.gpus_per_trial < 0:
        raise UsageError("tune.cpus_per_trial must be > 0 and tune.gpus_per_trial >= 0")
    if t.gpus_per_trial > 1 and t.gpus_per_trial != int(t.gpus_per_trial):
        raise UsageError("tune.gpus_per_trial above 1 must be a whole number of GPUs")
    if t.max_failures < 0:
        raise UsageError("tune.max_failures must be >= 0")
    if isinstance(t.reuse_actors, str) and t.reuse_actors != "auto":
        raise UsageError(f"tune.reuse_actors must be auto, true or false, not {t.reuse_actors!r}")
    if tr.optimizer not in ("adamw", "adam"):
        raise UsageError(f"train.optimizer {tr.optimizer!r} is unknown; use adamw or adam")
    if tr.memory not in MEMORY_CHOICES:
        raise UsageError(f"train.memory {tr.memory!r} is unknown; use one of {', '.join(MEMORY_CHOICES)}")
    if tr.memory_budget_gb is not None and not (tr.memory_budget_gb > 0 and math.isfinite(tr.memory_budget_gb)):
        raise UsageError(f"train.memory_budget_gb must be a positive number of GiB or null, not {tr.memory_budget_gb}")
    if tr.head not in ("invariant", "flatten"):
        raise UsageError(f"train.head {tr.head!r} is unknown; use invariant or flatten")
    if d.image_size < 9 or d.image_size % 2 == 0:
        raise UsageError(f"data.image_size must be an odd number >= 9 (e.g. 33, 65, 129), not {d.image_size}")
    if not 0 < d.crop_fraction <= 1:
        raise UsageError(f"data.crop_fraction must be in (0, 1], not {d.crop_fraction}")
    if d.simulate is not None:
        _positive("data.simulate.per_class", d.simulate.per_class)
    if not config.name or "/" in config.name:
        raise UsageError(f"name {config.name!r} must be a non-empty name without '/'")


def _check_search(s: SearchConfig) -> None:
    if not s.groups:
        raise UsageError("search.groups is empty; list at least one of " + ", ".join(MODEL_NAMES))
    for g in s.groups:
        if g not in MODEL_NAMES:
            raise UsageError(f"search.groups: unknown group {g!r}; choose from {', '.join(MODEL_NAMES)}")
    if len(set(s.groups)) != len(s.groups):
        raise UsageError("search.groups lists a group twice; list each once")
    if not s.widths or any(not (w > 0 and math.isfinite(w)) for w in s.widths):
        raise UsageError("search.widths must be a non-empty list of positive multipliers, e.g. [0.25, 0.5]")
    if not s.batch_sizes or any(b <= 0 for b in s.batch_sizes):
        raise UsageError("search.batch_sizes must be a non-empty list of positive integers, e.g. [32, 64]")
    for key in ("lr", "weight_decay"):
        _log_range(f"search.{key}", getattr(s, key))


def _log_range(key: str, pair: list[float]) -> None:
    if len(pair) != 2:
        raise UsageError(f"{key} must be a [low, high] pair, e.g. [1.0e-4, 3.0e-3]; got {pair}")
    lo, hi = pair
    if not (0 < lo and math.isfinite(hi)):
        raise UsageError(f"{key} bounds must be positive and finite (it is sampled log-uniformly); got {pair}")
    if lo >= hi:
        raise UsageError(f"{key} range [{lo}, {hi}] is empty or inverted; write it as [low, high] with low < high")


def _positive(key: str, value: int) -> None:
    if value <= 0:
        raise UsageError(f"{key} must be a positive integer, not {value}")
