"""Peak memory of one training step: parameters, gradients, optimiser state and activations.

Method. The step (zero grads, forward under the training autocast, loss, backward, AdamW step)
runs twice under :class:`LiveBytes`, a ``TorchDispatchMode`` that adds up the bytes of every
tensor storage an operation creates and subtracts them when the storage is freed; the peak of
the second step (when the optimiser state exists) is the step's peak. By default the step runs
on fake tensors (``torch._subclasses.FakeTensorMode``): every operation allocates the same
storages as a real step, but no pixel is computed, so a D8 width-1 step at batch 64 takes well
under a second and no memory. ``tests/lensnets/test_lensnets_memory.py`` checks that fake and real steps
give the same bytes. What this does not see: kernel workspaces inside a backend (oneDNN on CPU,
cuDNN on CUDA) and the CUDA caching allocator's rounding and fragmentation; on CUDA
:func:`measure_cuda_step` reads ``torch.cuda.max_memory_allocated`` of a real step instead.

The figures of :class:`StepMemory`:

- ``params``, ``buffers``: bytes of the model's parameters and buffers;
- ``grads``: one gradient per trainable parameter (fp32);
- ``optimizer``: the optimiser state after a step (AdamW: two moments per parameter);
- ``activations``: the rest of the peak: the input batch, tensors saved for backward and the
  temporaries of forward and backward (in train mode e2cnn also expands each filter from its
  basis here);
- ``peak`` = all of the above at the step's high-water mark.
"""
from __future__ import annotations

import copy
import math
import weakref
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from .factory import set_memory_mode

MIB = 2 ** 20
GIB = 2 ** 30


class LiveBytes(TorchDispatchMode):
    """Bytes of the tensor storages created inside this mode and not yet freed, and their peak."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self._sizes: dict[int, int] = {}

    def reset_peak(self) -> None:
        self.peak = self.live

    def _free(self, key: int) -> None:
        self.live -= self._sizes.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_flatten(out)[0]:
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()   # one Python object per live storage
                key = id(storage)
                if key not in self._sizes:
                    self._sizes[key] = storage.nbytes()
                    self.live += self._sizes[key]
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(storage, self._free, key)
        return out


@dataclass(frozen=True)
class StepMemory:
    """Bytes of one training step at ``batch`` images (see the module docstring)."""

    batch: int
    params: int
    buffers: int
    grads: int
    optimizer: int
    activations: int

    @property
    def peak(self) -> int:
        return self.params + self.buffers + self.grads + self.optimizer + self.activations

    def to_dict(self) -> dict:
        return {**asdict(self), "peak": self.peak}


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak bytes as a line in the batch size: ``fixed + batch * per_image``.

    Every activation has the batch as its first dimension, so the peak is linear in it; ``fixed``
    holds the parameters, gradients, optimiser state and batch-independent temporaries.
    """

    fixed: int
    per_image: int

    def peak(self, batch: int) -> int:
        return self.fixed + batch * self.per_image

    def largest_batch(self, budget_bytes: float) -> int:
        """The most images per step whose peak stays within ``budget_bytes`` (0: none fits)."""
        return max(0, math.floor((budget_bytes - self.fixed) / max(1, self.per_image)))


def equal_micro_batch(batch: int, capacity: int) -> int:
    """The size of ceil(batch / capacity) equal micro-batches (the last may be smaller); <= capacity."""
    steps = math.ceil(batch / max(1, min(batch, capacity)))
    return math.ceil(batch / steps)


def _working_copy(model: torch.nn.Module, mode, channels_last: bool) -> torch.nn.Module:
    """A copy of ``model`` (channels_last if asked) whose parameters and buffers are fake tensors
    of the same shapes and strides when ``mode`` is a FakeTensorMode, real copies otherwise."""
    fake = copy.deepcopy(model)
    if channels_last:
        fake = fake.to(memory_format=torch.channels_last)
    if mode is None:
        return fake
    for module in fake.modules():
        for name, param in list(module._parameters.items()):
            if param is not None:
                module._parameters[name] = torch.nn.Parameter(
                    mode.from_tensor(param.detach()), requires_grad=param.requires_grad)
        for name, buf in list(module._buffers.items()):
            if buf is not None:
                module._buffers[name] = mode.from_tensor(buf)
    return fake


def _train_step(model, optimizer, x, y, autocast_dtype) -> None:
    optimizer.zero_grad(set_to_none=True)
    autocast = (torch.autocast(x.device.type, dtype=autocast_dtype) if autocast_dtype
                else nullcontext())
    with autocast:
        logits = model(x)
    if logits.shape[1] == 1:
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0].float(), y.float())
    else:
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
    loss.backward()
    optimizer.step()


def _step_inputs(model, batch: int, device):
    config = model.config
    x = torch.randn(batch, config.in_channels, config.input_size, config.input_size, device=device)
    y = torch.randint(0, max(2, config.num_outputs), (batch,), device=device)
    return x, y


def _bytes(tensors) -> int:
    return sum(t.untyped_storage().nbytes() for t in tensors)


def measure_train_step(model: torch.nn.Module, batch: int, *, memory_mode: str = "plain",
                       autocast_dtype: torch.dtype | None = None, fake: bool = True,
                       channels_last: bool = False) -> StepMemory:
    """Peak memory of one AdamW training step of ``model`` (on its device) at ``batch`` images.

    ``fake=True`` runs the step on fake tensors (no compute; ``model`` is copied, not changed);
    ``fake=False`` runs it for real on a copy. ``autocast_dtype`` (e.g. ``torch.bfloat16``) runs
    the forward under autocast on the model's device type, as training does.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    device = next(model.parameters()).device
    mode = FakeTensorMode() if fake else None
    work = set_memory_mode(_working_copy(model, mode, channels_last).train(), memory_mode)
    params = [p for p in work.parameters()]
    tracker = LiveBytes()
    with (mode or nullcontext()):
        optimizer = torch.optim.AdamW([p for p in params if p.requires_grad], lr=1e-4, foreach=False)
        with tracker:
            x, y = _step_inputs(work, batch, device)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            _train_step(work, optimizer, x, y, autocast_dtype)
            tracker.reset_peak()
            _train_step(work, optimizer, x, y, autocast_dtype)
        state = [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
        grads = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
        opt_bytes = _bytes(state)
        return StepMemory(
            batch=batch, params=_bytes(params), buffers=_bytes(work.buffers()), grads=grads,
            optimizer=opt_bytes, activations=max(0, tracker.peak - opt_bytes - grads))


def measure_cuda_step(model: torch.nn.Module, batch: int, *, memory_mode: str = "plain",
                      autocast_dtype: torch.dtype | None = torch.bfloat16,
                      channels_last: bool = False) -> int:
    """``torch.cuda.max_memory_allocated`` over a real second training step (bytes), on CUDA."""
    work = set_memory_mode(copy.deepcopy(model).cuda().train(), memory_mode)
    if channels_last:
        work = work.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW([p for p in work.parameters() if p.requires_grad], lr=1e-4)
    x, y = _step_inputs(work, batch, "cuda")
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    _train_step(work, optimizer, x, y, autocast_dtype)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    _train_step(work, optimizer, x, y, autocast_dtype)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


def estimate_train_memory(model: torch.nn.Module, *, memory_mode: str = "plain",
                          autocast_dtype: torch.dtype | None = None, channels_last: bool = False,
                          batches: tuple[int, int] = (1, 8),
                          known: dict[int, int] | None = None) -> MemoryEstimate:
    """The peak as the line through fake steps at two batch sizes (1 and 8 images by default);
    ``known`` holds peaks already measured (batch -> bytes), which are not measured again.

    The true peak is close to linear but not exactly (where the high-water mark falls can move
    between layers as the batch grows), so callers that must fit check the size they pick with
    :func:`measure_train_step` (``study.engine.memory_plan`` does).
    """
    low, high = sorted(batches)
    peaks = dict(known or {})
    for n in (low, high):
        if n not in peaks:
            peaks[n] = measure_train_step(model, n, memory_mode=memory_mode,
                                          autocast_dtype=autocast_dtype, channels_last=channels_last).peak
    per_image = max(1, math.ceil((peaks[high] - peaks[low]) / max(1, high - low)))
    return MemoryEstimate(fixed=max(0, peaks[low] - low * per_image), per_image=per_image)
