"""The study configuration: typed pydantic models, loaded from YAML, overridden by ``--set key=value``.

A config file has five sections (see ``configs/local.yaml``); every key is a field below, with its
one default. pydantic parses and type-checks the file (strict types: ``"3"`` is not an int); unknown
keys, wrong types, empty or inverted ranges and impossible counts raise
:class:`common.errors.UsageError`, one line naming the key and the fix, before anything starts.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal, Optional, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from common.errors import UsageError
from lensnets.config import MEMORY_MODES, MODEL_NAMES

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "local.yaml"
Metric = Literal["val_auc_micro", "val_auc_macro", "val_acc", "val_loss"]
Memory = Literal[("auto",) + MEMORY_MODES]    # auto: lean on CUDA, plain on CPU


class Section(BaseModel):
    """A config section: strict types, no unknown keys, attributes assignable (tests adjust them)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class SimulateConfig(Section):
    preset: str = "small64"
    per_class: int = 600


class DataConfig(Section):
    path: str = "data/small64"
    simulate: Optional[SimulateConfig] = Field(default_factory=SimulateConfig)   # null: ingested data
    image_size: int = 33          # side of the (odd) square image the model sees
    crop_fraction: float = 1.0    # central crop before resizing (128/150 for DeepLense 150-px sets)
    rotate: bool = True           # random-rotation augmentation during training
    flip: bool = False            # random horizontal flips during training


class SearchConfig(Section):
    groups: list[str] = ["trivial", "C4", "C8", "D4", "D8", "resnet18"]
    widths: list[float] = [0.0625, 0.125]
    lr: list[float] = [3e-4, 3e-3]             # log-uniform [lo, hi]
    weight_decay: list[float] = [1e-6, 1e-3]   # log-uniform [lo, hi]
    batch_sizes: list[int] = [32, 64]
    allocation: Literal["adaptive", "equal"] = "adaptive"   # equal: every group the same number of
                                  # trials (round-robin), ASHA comparing a trial only within its group


class TrainConfig(Section):
    max_epochs: int = 8
    optimizer: Literal["adamw", "adam"] = "adamw"   # adamw: decoupled weight decay; adam: L2 in the gradient
    head: Literal["invariant", "flatten"] = "invariant"   # flatten: the seed's head
    width_mode: str = "channels"  # how lensnets scales width across groups (see lensnets/config.py)
    amp: bool = True              # bfloat16 autocast on CUDA where the GPU has it; ignored on CPU
    memory: Memory = "auto"       # lean: checkpointed blocks; plain; auto: lean on CUDA
    memory_budget_gb: Optional[float] = None   # GiB a trial may use; null: the GPU's free memory
                                               # (its share for gpus_per_trial < 1), no limit on CPU
    channels_last: Optional[bool] = None       # NHWC tensors; null: on CUDA only
    compile: bool = False         # torch.compile the training step (about a minute per model first;
                                  # falls back to eager if compiling fails)


class TuneConfig(Section):
    trials: int = 16
    max_concurrent: int = 2
    grace_period: int = 2         # ASHA's first rung, in epochs
    reduction_factor: int = 2     # ASHA keeps the top 1/reduction_factor at each rung
    metric: Metric = "val_auc_micro"
    mode: Literal["max", "min"] = "max"
    cpus_per_trial: float = 1
    gpus_per_trial: float = 0
    max_failures: int = 2
    storage_path: str = "runs"
    reuse_actors: Literal["auto", True, False] = "auto"   # one actor runs trial after trial; auto: on a one-node cluster


class MlflowConfig(Section):
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: Optional[str] = None   # defaults to the study name


class StudyConfig(Section):
    name: str = "lens-study"
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)

    @field_validator("data", "search", "train", "tune", "mlflow", mode="before")
    @classmethod
    def _empty_section_takes_defaults(cls, value):
        return {} if value is None else value    # "train:" with nothing under it

    @property
    def experiment(self) -> str:
        return self.mlflow.experiment or self.name

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


# ----------------------------------------------------------------------------- loading


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> StudyConfig:
    """Read a YAML config (the shipped default when ``path`` is None), apply overrides, validate."""
    path = Path(path) if path else DEFAULT_CONFIG
    if not path.is_file():
        raise UsageError(f"config file {path} does not exist; pass an existing YAML file to --config")
    try:
        raw = yaml.load(path.read_text(), Loader=ConfigLoader) or {}
    except yaml.YAMLError as err:
        raise UsageError(f"config file {path} is not valid YAML ({_first_line(err)}); fix its syntax")
    if not isinstance(raw, dict):
        raise UsageError(f"config file {path} must hold a mapping of sections, not {type(raw).__name__}")
    for item in overrides:
        _apply_override(raw, item)
    return config_from_dict(raw)


def config_from_dict(raw: dict) -> StudyConfig:
    """Parse and validate a config mapping (a YAML file's, or one saved with :meth:`StudyConfig.to_dict`)."""
    if not isinstance(raw, dict):
        raise UsageError(f"a config must be a mapping of sections, not {type(raw).__name__}")
    try:
        config = StudyConfig.model_validate(raw)
    except ValidationError as err:
        raise UsageError(_one_line(err.errors()[0])) from None
    validate(config)
    return config


class ConfigLoader(yaml.SafeLoader):
    """YAML as a config means it: a key given twice is an error (plain YAML keeps the last), and
    ``1e-3`` is a number (YAML 1.1 reads exponents without a dot as strings)."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        twice = sorted({str(k) for k in keys if keys.count(k) > 1})
        if twice:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {twice[0]!r} is given twice; give each key once", node.start_mark)
        return super().construct_mapping(node, deep=deep)


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+(\.[0-9]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


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
        node[leaf] = yaml.load(text, Loader=ConfigLoader)
    except yaml.YAMLError:
        node[leaf] = text


# pydantic's error type -> the one-line message (key, what it must be, the value given)
_TYPE_NAMES = {"int_type": "int", "float_type": "float", "bool_type": "bool", "string_type": "str"}
_LIST_EXAMPLES = {"widths": "0.25, 0.5", "lr": "1.0e-4, 3.0e-3", "weight_decay": "1.0e-6, 1.0e-3",
                  "batch_sizes": "32, 64", "groups": "C4, C8"}


def _one_line(error: dict) -> str:
    """One of pydantic's errors as our one-line message naming the key and the fix."""
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]).lstrip(".")
    kind, value = error["type"], error.get("input")
    if kind == "extra_forbidden":
        section = _section_at(error["loc"][:-1])
        return f"unknown config key {key}; known keys here: {', '.join(section.model_fields)}"
    if kind == "literal_error":
        choices = get_args(_field_at(error["loc"]).annotation)
        return f"{key} {value!r} is unknown; use one of {', '.join(_yaml_spelling(c) for c in choices)}"
    if kind == "list_type":
        example = _LIST_EXAMPLES.get(str(error["loc"][-1]), "...")
        return f"config key {key} must be a list, e.g. [{example}]; got {value!r}"
    if kind in ("model_type", "dict_type"):
        return f"config section {key} must be a mapping of keys, not {value!r}"
    if kind in _TYPE_NAMES:
        return f"config key {key} must be {_TYPE_NAMES[kind]}; got {value!r}"
    return f"config key {key}: {error['msg']}; got {value!r}"


def _section_at(loc: tuple) -> type[Section]:
    model: type[Section] = StudyConfig
    for part in loc:
        annotation = model.model_fields[part].annotation
        model = next(a for a in (annotation, *get_args(annotation)) if isinstance(a, type) and issubclass(a, Section))
    return model


def _field_at(loc: tuple):
    return _section_at(loc[:-1]).model_fields[loc[-1]]


def _yaml_spelling(value) -> str:
    return yaml.safe_dump(value).removesuffix("\n...\n").strip()


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
    if t.cpus_per_trial <= 0 or t.gpus_per_trial < 0:
        raise UsageError("tune.cpus_per_trial must be > 0 and tune.gpus_per_trial >= 0")
    if t.gpus_per_trial > 1 and t.gpus_per_trial != int(t.gpus_per_trial):
        raise UsageError("tune.gpus_per_trial above 1 must be a whole number of GPUs")
    if t.max_failures < 0:
        raise UsageError("tune.max_failures must be >= 0")
    if tr.memory_budget_gb is not None and not (tr.memory_budget_gb > 0 and math.isfinite(tr.memory_budget_gb)):
        raise UsageError(f"train.memory_budget_gb must be a positive number of GiB or null, not {tr.memory_budget_gb}")
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
