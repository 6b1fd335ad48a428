"""Small fixes that let e2cnn 0.2.3 run fast and on numpy 2.

1. ``e2cnn.kernels.utils`` calls ``np.array(x, copy=False)`` on Python scalars, which numpy 2
   refuses ("Unable to avoid copy"); every dihedral group (D1..D8) fails to build. We give that
   one module a numpy whose ``array(..., copy=False)`` means ``asarray`` (numpy 1 semantics).
2. ``e2cnn.nn.init.generalized_he_init`` loops in Python over every weight (about 2 s for one
   48 -> 96 field C8 layer). :func:`he_init_uniform_fields` computes the same variances from a
   one-field layer (exactly equal: see ``tests/lensnets/test_lensnets_export.py``).
3. ``BlocksBasisExpansion`` keeps the slice bounds of contiguous blocks as lists of 0-d tensors
   and reads them with ``.item()`` on every forward; fake tensors (the memory estimate in
   ``lensnets.memory``) cannot. :func:`plain_slice_bounds` turns them into Python ints.
"""
from __future__ import annotations

import math
import re
import warnings

import numpy as np
import torch
from e2cnn import nn as enn
from e2cnn.kernels import utils as _kernel_utils
from e2cnn.nn.init import _generalized_he_init_variances


class _Numpy1ArrayCopy:
    """Forwards to numpy, except that ``array(x, copy=False)`` copies when it must (numpy 1)."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def array(obj, *args, copy=True, **kwargs):
        if copy is False:
            return np.asarray(obj, *args, **kwargs)
        return np.array(obj, *args, copy=copy, **kwargs)


def install() -> None:
    """Apply fix 1 (idempotent; only where numpy >= 2) and silence e2cnn's uint8-mask warning."""
    warnings.filterwarnings("ignore", message="indexing with dtype torch.uint8 is now deprecated")
    if int(np.__version__.split(".")[0]) >= 2 and not isinstance(_kernel_utils.np, _Numpy1ArrayCopy):
        _kernel_utils.np = _Numpy1ArrayCopy()


_VARIANCE_CACHE: dict[tuple, torch.Tensor] = {}


def _one_field_variances(in_type: enn.FieldType, out_type: enn.FieldType,
                         kernel_size: int) -> torch.Tensor:
    """He variances of a layer with one input and one output field of the same types."""
    key = (in_type.gspace.name, in_type.representations[0].name,
           out_type.representations[0].name, kernel_size)
    if key not in _VARIANCE_CACHE:
        one_in = enn.FieldType(in_type.gspace, in_type.representations[:1])
        one_out = enn.FieldType(out_type.gspace, out_type.representations[:1])
        conv = enn.R2Conv(one_in, one_out, kernel_size, bias=False, initialize=False)
        _VARIANCE_CACHE[key] = _generalized_he_init_variances(conv.basisexpansion)
    return _VARIANCE_CACHE[key]


def he_init_uniform_fields(conv: enn.R2Conv) -> None:
    """Generalised He init of a conv whose input (output) fields all share one representation.

    e2cnn sets weight ``w`` (basis element ``b`` of block (out field o, in field i)) to
    ``N(0, 1) / sqrt(n_irreps(o) * count(b's in-irrep into o))``; the count over all input fields
    is ``F_in`` times the one-field count, and weights are ordered (o, i, b). So the variance
    vector is the one-field vector divided by sqrt(F_in), tiled F_out * F_in times.
    """
    in_type, out_type = conv.in_type, conv.out_type
    if len({r.name for r in in_type.representations}) != 1 or \
            len({r.name for r in out_type.representations}) != 1:
        raise ValueError("he_init_uniform_fields needs one representation per field type")
    one = _one_field_variances(in_type, out_type, conv.kernel_size)
    n_in, n_out = len(in_type), len(out_type)
    std = (one / math.sqrt(n_in)).repeat(n_out * n_in).to(conv.weights.device)
    with torch.no_grad():
        conv.weights.copy_(std * torch.randn_like(conv.weights))


_BOUNDS = re.compile(r"(in|out)_indices_")


def plain_slice_bounds(module: torch.nn.Module) -> None:
    """Fix 3: every basis expansion under ``module`` keeps its slice bounds as Python ints."""
    for sub in module.modules():
        for name, value in list(vars(sub).items()):
            if _BOUNDS.match(name) and isinstance(value, list):
                setattr(sub, name, [int(v) for v in value])
