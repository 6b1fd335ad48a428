"""Model configuration: the one typed description from which every model is built.

Pure Python (no torch import) so the study and the command line can validate configs cheaply.

Width
-----
The seed network (a C8 steerable CNN) has ``SEED_FIELDS = (24, 48, 48, 96, 96, 64)`` regular
fields in its six blocks; a regular field of a group ``G`` has ``|G|`` channels. For a group of
order ``|G|``, block ``l`` gets

    fields_l = max(1, round(width * SEED_FIELDS[l] * (8 / |G|) ** p))     channels_l = fields_l * |G|

with ``p`` set by ``width_mode``:

- ``"fields"``   (p = 0): the number of regular fields is fixed (channels grow as |G|; body
  parameters grow about as |G|, compute as |G|^2). ``trivial`` at width 1 is a 24-channel CNN.
- ``"channels"`` (p = 1): the number of channels (fields x |G|) is fixed at the seed C8 network's
  ``width * 8 * SEED_FIELDS``, so compute (MACs) is the same for every group; parameters fall
  as 1/|G|.
- ``"params"``   (p = 1/2): the body's parameter count is (nearly) fixed at the seed C8 network's.
  A 5x5 regular-to-regular steerable conv has exactly ``11 |G|`` free weights per field pair, so
  its parameters are ``11 F_in F_out |G|``, constant when ``F^2 |G|`` is (the e2cnn sqrt(|G|)
  convention); rounding, the 7x7 lifting layer and batch-norm make it approximate (see README).

All three modes coincide for C8 (the seed's group): width 1 is the seed's network there.
``resnet18`` ignores ``width``, ``width_mode`` and ``head`` (torchvision's fixed-width model).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from common.errors import UsageError

#: group name -> (family, N): "C" = rotations by 360/N deg, "D" = those and a mirror flip.
GROUP_SPECS: dict[str, tuple[str, int]] = {
    "trivial": ("C", 1), "C2": ("C", 2), "C4": ("C", 4), "C8": ("C", 8), "C16": ("C", 16),
    "D1": ("D", 1), "D2": ("D", 2), "D4": ("D", 4), "D8": ("D", 8),
}
GROUPS: tuple[str, ...] = tuple(GROUP_SPECS)
MODEL_NAMES: tuple[str, ...] = GROUPS + ("resnet18",)
HEADS: tuple[str, ...] = ("invariant", "flatten")
#: width_mode -> exponent p of (8 / |G|) in the width rule above.
WIDTH_EXPONENTS: dict[str, float] = {"fields": 0.0, "channels": 1.0, "params": 0.5}
WIDTH_MODES: tuple[str, ...] = tuple(WIDTH_EXPONENTS)
#: how a model keeps activations for backward in training (``lensnets.set_memory_mode``)
MEMORY_MODES: tuple[str, ...] = ("plain", "lean")
SEED_FIELDS: tuple[int, ...] = (24, 48, 48, 96, 96, 64)
SEED_KERNELS: tuple[int, ...] = (7, 5, 5, 5, 5, 5)
SEED_PADDINGS: tuple[int, ...] = (1, 2, 2, 2, 2, 1)
#: block index (0-based) -> stride of the Gaussian pool after it (sigma 0.66: a 5x5 filter)
POOL_AFTER: dict[int, int] = {1: 2, 3: 2, 5: 1}
POOL_SIGMA = 0.66
POOL_KERNEL = 5
SEED_GROUP_ORDER = 8
MIN_INPUT_SIZE = 29      # smallest 4k+1 size whose last feature map is still >= 1 pixel
MIN_RESNET_INPUT = 16


def group_order(name: str) -> int:
    """|G|: N for the cyclic group C_N, 2N for the dihedral group D_N."""
    family, n = GROUP_SPECS[name]
    return n if family == "C" else 2 * n


def feature_sizes(input_size: int) -> tuple[int, ...]:
    """Spatial size (pixels) after blocks 1, 2, pool 1, blocks 3-4, pool 2, block 5, block 6, pool 3.

    Conv 7x7 pad 1: S -> S - 4; 5x5 pad 2 keeps S; the last 5x5 pad 1: S -> S - 2; Gaussian pools
    (5x5, pad 2, stride 2): S -> (S + 1) // 2; the last pool (5x5, no pad, stride 1): S -> S - 4.
    """
    s1 = input_size - 4
    p1 = (s1 + 1) // 2
    p2 = (p1 + 1) // 2
    s6 = p2 - 2
    return (s1, s1, p1, p1, p2, p2, s6, s6 - 4)


def _check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UsageError(f"model {key} {value!r} is unknown; choose one of {', '.join(choices)}")


def _check_int(key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"model {key} must be an integer >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; saved in checkpoints (``to_dict``/``from_dict``).

    ``num_classes == 2`` gives ONE logit (train with BCEWithLogits, predict with sigmoid);
    ``num_classes > 2`` gives ``num_classes`` logits (cross-entropy / softmax).
    """

    name: str = "C8"
    width: float = 1.0
    width_mode: str = "fields"
    num_classes: int = 3
    input_size: int = 129
    head: str = "invariant"
    in_channels: int = 1

    def __post_init__(self) -> None:
        _check_choice("name", self.name, MODEL_NAMES)
        _check_choice("width_mode", self.width_mode, WIDTH_MODES)
        _check_choice("head", self.head, HEADS)
        if isinstance(self.width, bool) or not isinstance(self.width, (int, float)) \
                or not math.isfinite(self.width) or self.width <= 0:
            raise UsageError(f"model width must be a positive number, got {self.width!r}")
        object.__setattr__(self, "width", float(self.width))
        _check_int("num_classes", self.num_classes, 2)
        _check_int("in_channels", self.in_channels, 1)
        self._check_input_size()

    def _check_input_size(self) -> None:
        size = self.input_size
        if not self.is_steerable:
            _check_int("input_size", size, MIN_RESNET_INPUT)
            return
        if isinstance(size, bool) or not isinstance(size, int) or size < MIN_INPUT_SIZE \
                or size % 4 != 1:
            raise UsageError(
                f"model input_size {size!r} is not supported by the steerable CNN: use 4k+1 pixels, "
                f">= {MIN_INPUT_SIZE} (e.g. 33, 65, 129), so every stride-2 pool sees an odd map "
                "and rotations by 90 degrees stay exact")

    @property
    def is_steerable(self) -> bool:
        return self.name in GROUP_SPECS

    @property
    def num_outputs(self) -> int:
        """Logits per image: 1 for binary, num_classes otherwise."""
        return 1 if self.num_classes == 2 else self.num_classes

    @property
    def group_order(self) -> int:
        return group_order(self.name) if self.is_steerable else 1

    def fields(self) -> tuple[int, ...]:
        """Regular fields in each of the six blocks (see the module docstring for the rule)."""
        scale = self.width * (SEED_GROUP_ORDER / self.group_order) ** WIDTH_EXPONENTS[self.width_mode]
        return tuple(max(1, int(math.floor(scale * f + 0.5))) for f in SEED_FIELDS)

    def channels(self) -> tuple[int, ...]:
        """Channels (fields x |G|) in each of the six blocks."""
        return tuple(f * self.group_order for f in self.fields())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown model config key(s) {', '.join(map(str, unknown))}; "
                             f"valid keys are {', '.join(sorted(known))}")
        return cls(**dict(data))
