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
  convention); rounding, the 7x7 lifting layer and batch-norm make it approximate (see docs/models-and-memory.md).

All three modes coincide for C8 (the seed's group): width 1 is the seed's network there.
``resnet18`` ignores ``width``, ``width_mode`` and ``head`` (torchvision's fixed-width model).

Continuous groups (``SO2``, ``O2``)
-----------------------------------
SO(2) and O(2) have no regular representation (they are infinite), so a field is the
band-limited one: the direct sum of the irreps up to frequency ``F = MAX_FREQUENCY`` (2), each
once, in this channel order (``field_irreps``):

- ``SO2``: psi_0 (trivial, 1 channel) + psi_1 + ... + psi_F (2 channels each): 2F + 1 = 5 channels;
  this is exactly the regular representation of SO(2) band-limited to frequency F;
- ``O2``: the same irreps of O(2): trivial + psi_1 ... psi_F (a flip mirrors each 2-vector):
  5 channels. O(2)'s sign irrep (a pseudo-scalar: rotation-invariant, negated by a flip) is left
  out: a 5x5 kernel cannot make one from the trivial input, so it is first computed in block 2
  from the 2-vectors, by derivative-like kernels whose discretisation error, normalised by batch
  norm, made O2 3x less invariant off the pixel grid than SO2 (docs/models-and-memory.md).

For the width rule, ``group_order`` (the "|G|" above) is the number of channels of one such field,
so ``fields`` and ``channels`` modes mean the same as for finite groups (``channels``: the seed C8
network's channel counts, hence its MACs, within the rounding of fields x 5). In
``params`` mode the 11 |G| free weights of a regular 5x5 field pair are replaced by the actual
count of the band-limited pair (``FIELD_PAIR_WEIGHTS``: 43 for SO2, 23 for O2, i.e. an effective
order B / 11 of 3.9 and 2.1), so ``F^2 B`` is again the seed network's. Why F = 2: e2cnn's default
angular cutoff for 5x5 kernels is frequency 2, so every field frequency is reached directly from
the trivial one; and untrained SO2/O2 models at 65 px deviated less under 30/45/73-degree
rotations with F = 2 than with F = 3 (median relative deviation over 3 seeds 0.06 vs 0.11 for
SO2, 0.17 vs 0.19 for O2; F = 1 was as good for SO2 but leaves 3 channels per field).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from common.errors import UsageError

#: maximum irrep frequency F of the band-limited fields of the continuous groups
MAX_FREQUENCY = 2
#: group name -> (family, n): "C" = rotations by 360/n deg, "D" = those and a mirror flip;
#: "SO" = all rotations, "O" = all rotations and flips, with fields band-limited to frequency n.
GROUP_SPECS: dict[str, tuple[str, int]] = {
    "trivial": ("C", 1), "C2": ("C", 2), "C4": ("C", 4), "C8": ("C", 8), "C16": ("C", 16),
    "D1": ("D", 1), "D2": ("D", 2), "D4": ("D", 4), "D8": ("D", 8),
    "SO2": ("SO", MAX_FREQUENCY), "O2": ("O", MAX_FREQUENCY),
}
CONTINUOUS_FAMILIES = ("SO", "O")
#: free weights of e2cnn's default 5x5 steerable conv between two band-limited fields (F = 2);
#: a regular field pair of a finite group has 11 |G| (``tests/lensnets/test_lensnets_continuous.py``).
FIELD_PAIR_WEIGHTS: dict[str, int] = {"SO2": 43, "O2": 23}
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


def is_continuous(name: str) -> bool:
    return name in GROUP_SPECS and GROUP_SPECS[name][0] in CONTINUOUS_FAMILIES


def group_order(name: str) -> int:
    """Channels per field: |G| (N for C_N, 2N for D_N); 2F + 1 for SO2 and O2."""
    family, n = GROUP_SPECS[name]
    return {"C": n, "D": 2 * n, "SO": 2 * n + 1, "O": 2 * n + 1}[family]


def param_order(name: str) -> float:
    """The order used by ``params`` mode: |G|, or (free weights of a 5x5 field pair) / 11."""
    return FIELD_PAIR_WEIGHTS[name] / 11 if is_continuous(name) else group_order(name)


def field_irreps(name: str) -> tuple[int, ...]:
    """Sizes of the irreps in one field of a continuous group, in channel order (see above):
    the trivial irrep, then F 2-channel irreps."""
    family, n = GROUP_SPECS[name]
    if family not in CONTINUOUS_FAMILIES:
        raise ValueError(f"{name} is a finite group: its fields are regular, not band-limited")
    return (1,) + (2,) * n


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

    @property
    def is_continuous(self) -> bool:
        return is_continuous(self.name)

    def fields(self) -> tuple[int, ...]:
        """Fields (regular, or band-limited for SO2/O2) in each of the six blocks (see the module
        docstring for the rule)."""
        order = param_order(self.name) if self.width_mode == "params" and self.is_steerable \
            else self.group_order
        scale = self.width * (SEED_GROUP_ORDER / order) ** WIDTH_EXPONENTS[self.width_mode]
        return tuple(max(1, int(math.floor(scale * f + 0.5))) for f in SEED_FIELDS)

    def invariant_features(self) -> int:
        """Invariant channels the head receives per pixel: one per last-block field (group
        pooling), or one per irrep of each field for SO2/O2 (norm pooling)."""
        per_field = len(field_irreps(self.name)) if self.is_continuous else 1
        return self.fields()[-1] * per_field

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
