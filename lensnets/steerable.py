"""The seed's E(2)-steerable CNN over any group in ``GROUPS``, with a flatten or invariant head.

Body (the seed's; sizes for a 129-px input):

    mask(S, margin 1) -> [R2Conv 7x7 pad 1 -> InnerBN -> ReLU]            125 px, F1 fields
    -> [R2Conv 5x5 pad 2 -> InnerBN -> ReLU] -> GaussPool(sigma .66, /2)   63 px, F2
    -> [5x5 pad 2 block] -> [5x5 pad 2 block] -> GaussPool(/2)             32 px, F3, F4
    -> [5x5 pad 2 block] -> [5x5 pad 1 block] -> GaussPool(stride 1, pad 0) 26 px, F5, F6
    -> GroupPooling (max over the |G| channels of each regular field)       F6 invariant channels

Every feature map is a stack of regular fields: rotating (or flipping, for D_N) the input by
g in G moves each map spatially by g and cyclically permutes the |G| channels of every field,
f(g x) = rho_reg(g) f(x). Group pooling (max over a field's channels) removes the permutation.
SO2/O2 (``lensnets.band``): fields are band-limited (irreps 0..F), a rotation acts on each
field's irreps by their rotation matrices; blocks are R2Conv -> band batch norm -> ReLU /
norm-ReLU, and norm pooling (one norm per irrep) replaces group pooling. Heads:

- ``invariant`` (default): global average over space, then Linear(F6, 64) -> ELU -> Linear.
  Both poolings are invariant, so logits(g x) = logits(x) exactly for rot90/flips (float
  round-off) and up to filter discretisation for 45- and 22.5-degree rotations.
- ``flatten`` (the seed's): Flatten(F6 x 26 x 26) -> Linear(., 64) -> BatchNorm1d -> ELU ->
  Linear; the spatial layout is kept, so it is NOT invariant.

Memory modes (:meth:`SteerableCNN.set_memory_mode`; the results are the same in both):

- ``plain``: autograd keeps every block's convolution output (for batch norm's backward) and
  ReLU output (for ReLU's backward and the next convolution's).
- ``lean``: in training with gradients on, each block (with the pool after it) runs under
  ``torch.utils.checkpoint`` (non-reentrant): only the block's input is kept, and the block is
  run again in backward. The recomputation leaves batch-norm running statistics untouched, so
  they are updated once per step as in plain mode. ReLUs work in place on the batch-norm output
  (batch norm's backward needs its input, not its output), so no second copy of each map exists.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager, nullcontext
from functools import partial

import torch
from torch.utils.checkpoint import checkpoint
from e2cnn import gspaces
from e2cnn import nn as enn

from . import e2cnn_compat
from .band import BandBatchNorm, BandNormReLU, IrrepNorms, OnFields, band_limited_repr, invariant_type
from .config import (GROUP_SPECS, MEMORY_MODES, POOL_AFTER, POOL_SIGMA, SEED_KERNELS,
                     SEED_PADDINGS, ModelConfig, field_irreps, is_continuous)
from .layers import (ExportableMaskModule, ExportablePointwiseAvgPoolAntialiased,
                     FastGroupPooling, FastInnerBatchNorm, FieldMaxPool, LeanR2Conv)
from .lean_ops import recomputing
from .plain import build_head

e2cnn_compat.install()


def make_gspace(group: str) -> gspaces.GSpace:
    """The group acting on the plane: rotations by 360/N deg (C_N), and flips (D_N); all
    rotations (SO2), and flips (O2), with irreps up to frequency F."""
    family, n = GROUP_SPECS[group]
    if family in ("SO", "O"):
        make = gspaces.Rot2dOnR2 if family == "SO" else gspaces.FlipRot2dOnR2
        return make(N=-1, maximum_frequency=n)
    if n == 1:
        return gspaces.TrivialOnR2() if family == "C" else gspaces.Flip2dOnR2()
    return gspaces.Rot2dOnR2(n) if family == "C" else gspaces.FlipRot2dOnR2(n)


_FIELD_REPRS: dict[str, object] = {}


def field_repr(group: str, gspace: gspaces.GSpace):
    """One field's representation: regular (finite groups) or band-limited (SO2, O2)."""
    if not is_continuous(group):
        return gspace.regular_repr
    if group not in _FIELD_REPRS:
        _FIELD_REPRS[group] = band_limited_repr(gspace, group)
    return _FIELD_REPRS[group]


def _block(group: str, in_type: enn.FieldType, fields: int, kernel: int,
           padding: int) -> enn.SequentialModule:
    gspace = in_type.gspace
    out_type = enn.FieldType(gspace, fields * [field_repr(group, gspace)])
    conv = LeanR2Conv(in_type, out_type, kernel_size=kernel, padding=padding, bias=False,
                      initialize=False)
    e2cnn_compat.he_init_uniform_fields(conv)
    e2cnn_compat.plain_slice_bounds(conv)
    if is_continuous(group):
        return enn.SequentialModule(conv, OnFields(out_type, BandBatchNorm(group, fields)),
                                    OnFields(out_type, BandNormReLU(group, fields)))
    return enn.SequentialModule(conv, FastInnerBatchNorm(out_type), enn.ReLU(out_type))


def build_body(config: ModelConfig) -> enn.SequentialModule:
    """Mask and the six blocks with the three Gaussian pools (ends before group pooling).

    The Gaussian pool filters every channel alike with an isotropic kernel, so it commutes with
    any linear action on a field's channels: it serves band-limited fields unchanged."""
    gspace = make_gspace(config.name)
    in_type = enn.FieldType(gspace, config.in_channels * [gspace.trivial_repr])
    layers: list[enn.EquivariantModule] = [ExportableMaskModule(in_type, config.input_size, margin=1)]
    for index, (fields, kernel, pad) in enumerate(zip(config.fields(), SEED_KERNELS, SEED_PADDINGS)):
        block = _block(config.name, in_type, fields, kernel, pad)
        layers.append(block)
        in_type = block.out_type
        if index in POOL_AFTER:
            stride = POOL_AFTER[index]
            layers.append(ExportablePointwiseAvgPoolAntialiased(
                in_type, sigma=POOL_SIGMA, stride=stride, padding=None if stride == 2 else 0))
    return enn.SequentialModule(*layers)


def block_segments(body: enn.SequentialModule) -> list[tuple[enn.EquivariantModule, ...]]:
    """The body cut into checkpoint segments: each of the six blocks with the pool after it
    (the input mask joins the first block)."""
    segments, current = [], []
    for module in body.children():
        starts_block = isinstance(module, enn.SequentialModule)
        if starts_block and any(isinstance(m, enn.SequentialModule) for m in current):
            segments.append(tuple(current))
            current = []
        current.append(module)
    return segments + [tuple(current)]


def _run_lean(module: enn.EquivariantModule, t: enn.GeometricTensor) -> enn.GeometricTensor:
    """One body module the lean way: a block's batch norm and ReLU fused, pools keeping no map."""
    if isinstance(module, enn.SequentialModule):
        conv, norm, _relu = module.children()
        if not hasattr(norm, "forward_relu"):   # band-limited fields: norm and nonlinearity as they are
            return module(t)
        return norm.forward_relu(conv(t))
    if isinstance(module, ExportablePointwiseAvgPoolAntialiased):
        return module.forward_lean(t)
    return module(t)


def _run_segment(modules, in_type: enn.FieldType, x: torch.Tensor) -> torch.Tensor:
    t = enn.GeometricTensor(x, in_type)
    for module in modules:
        t = _run_lean(module, t)
    return t.tensor


@contextmanager
def frozen_running_stats(modules):
    """Batch norm inside ``modules`` normalises with batch statistics as usual but leaves its
    running mean, variance and batch counter as they were (momentum 0, counter restored)."""
    norms = [m for module in modules for m in module.modules()
             if isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, BandBatchNorm))
             and m.track_running_stats]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, count) in zip(norms, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(count)


@contextmanager
def _recomputation(modules):
    with frozen_running_stats(modules), recomputing():
        yield


def _recompute_contexts(modules):
    return nullcontext(), _recomputation(modules)


class SteerableCNN(torch.nn.Module):
    """float32 [B, in_channels, S, S] -> logits [B, num_outputs]; S = ``config.input_size``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.body = build_body(config)
        self.input_type = self.body.in_type
        out_type = self.body.out_type
        if config.is_continuous:   # norm pooling: one invariant per irrep of every field
            self.gpool = OnFields(out_type, IrrepNorms(config.name, len(out_type)),
                                  invariant_type(out_type, config.name))
        else:
            self.gpool = FastGroupPooling(out_type)
        self.head = build_head(config)
        self.memory_mode = "plain"

    def set_memory_mode(self, mode: str) -> "SteerableCNN":
        """``"lean"``: checkpointed blocks with fused batch norm + ReLU in training; ``"plain"``:
        e2cnn's modules as they are. Both compute the same (see the module docstring)."""
        if mode not in MEMORY_MODES:
            raise ValueError(f"memory mode {mode!r} is unknown; use one of {', '.join(MEMORY_MODES)}")
        self.memory_mode = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.config.input_size
        if x.dim() != 4 or x.shape[1] != self.config.in_channels or x.shape[-2:] != (size, size):
            raise ValueError(f"expected input [B, {self.config.in_channels}, {size}, {size}], "
                             f"got {list(x.shape)}")
        if self.memory_mode == "lean" and self.training and torch.is_grad_enabled():
            in_type = self.input_type
            for modules in block_segments(self.body):
                x = checkpoint(partial(_run_segment, modules, in_type), x, use_reentrant=False,
                               context_fn=partial(_recompute_contexts, modules))
                in_type = modules[-1].out_type
            features = enn.GeometricTensor(x, in_type)
        else:
            features = self.body(enn.GeometricTensor(x, self.input_type))
        return self.head(self.gpool(features).tensor)

    def export(self) -> torch.nn.Sequential:
        """Plain-PyTorch copy for inference (eval mode), sharing no tensors with this model."""
        was_training = self.training
        device = next(self.parameters()).device
        body = self.body.export()
        self.train(was_training)
        pool = self.gpool.export() if self.config.is_continuous else FieldMaxPool(self.config.group_order)
        exported = torch.nn.Sequential(body, pool, copy.deepcopy(self.head))
        exported.config = self.config
        return _detach_all(exported).to(device).eval()


def _detach_all(module: torch.nn.Module) -> torch.nn.Module:
    """Give every parameter and buffer its own storage (e2cnn's export shares the filters)."""
    for sub in module.modules():
        for name, param in list(sub._parameters.items()):
            if param is not None:
                sub._parameters[name] = torch.nn.Parameter(param.detach().clone(),
                                                           requires_grad=param.requires_grad)
        for name, buf in list(sub._buffers.items()):
            if buf is not None:
                sub._buffers[name] = buf.detach().clone()
    return module


_BASIS_SIZES: dict[tuple[str, bool, int], int] = {}


def basis_size(group: str, lifting: bool, kernel: int) -> int:
    """Free weights of a steerable conv between ONE input and ONE output field.

    ``lifting``: trivial (1-channel) input field -> regular (band-limited for SO2/O2) field;
    else field -> field. A layer from F_in to F_out such fields has F_in F_out times as many.
    """
    key = (group, lifting, kernel)
    if key not in _BASIS_SIZES:
        gspace = make_gspace(group)
        out_repr = field_repr(group, gspace)
        in_repr = gspace.trivial_repr if lifting else out_repr
        conv = enn.R2Conv(enn.FieldType(gspace, [in_repr]), enn.FieldType(gspace, [out_repr]),
                          kernel_size=kernel, bias=False, initialize=False)
        _BASIS_SIZES[key] = conv.weights.numel()
    return _BASIS_SIZES[key]


def steerable_param_count(config: ModelConfig) -> int:
    """Trainable parameters of ``SteerableCNN(config)`` without building it.

    sum_l F_{l-1} F_l B_G(k_l)   (F_0 = in_channels trivial fields; B_G from :func:`basis_size`)
    + sum_l 2 F_l                (InnerBatchNorm: one scale and one shift per field)
    + the head's parameters.
    SO2/O2 (n irreps per field): 2 n per field instead of 2 (``lensnets.band``: a scale per irrep
    and a shift for the trivial one in batch norm, a norm-ReLU bias per non-trivial irrep).
    """
    per_field = 2 * len(field_irreps(config.name)) if config.is_continuous else 2
    total, previous = 0, config.in_channels
    for index, (fields, kernel) in enumerate(zip(config.fields(), SEED_KERNELS)):
        total += previous * fields * basis_size(config.name, index == 0, kernel) + per_field * fields
        previous = fields
    return total + sum(p.numel() for p in build_head(config).parameters())
