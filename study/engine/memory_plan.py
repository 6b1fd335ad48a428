"""How a trial fits its device: memory mode, precision, layout and micro-batch size.

Before a trial trains, :func:`plan_memory` measures its peak step memory on fake tensors
(``lensnets.memory``: the allocations of a real step, no compute) and compares it with the budget:
``train.memory_budget_gb`` if set, else on CUDA the free memory of the GPU (at most the trial's
share of it when ``tune.gpus_per_trial`` < 1, so packed trials stay within their fractions), with
10% kept back for the allocator and cuDNN workspaces; on CPU there is no limit unless one is set.
A batch that does not fit is split into equal micro-batches whose gradients are accumulated, so
the optimiser still sees the configured batch; batch norm then normalises each micro-batch with
its own statistics. A trial that does not fit at one image per micro-batch stops with
:class:`TrialDoesNotFit`, whose one-line message MLflow records as the trial's failure reason.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

GIB = 2 ** 30
KEEP_FREE = 0.10        # share of the device budget left for allocator rounding and workspaces
MAX_EVAL_BATCH = 256


class TrialDoesNotFit(RuntimeError):
    """A trial whose step does not fit its memory budget even one image at a time."""


@dataclass(frozen=True)
class MemoryPlan:
    """What the engine runs with; ``estimate`` is None when there was no budget to check."""

    memory_mode: str                 # "plain" or "lean" (lensnets.set_memory_mode)
    autocast: torch.dtype | None     # bfloat16 on CUDA when the hardware has it, else None
    channels_last: bool
    micro_batch: int
    eval_batch: int
    budget_bytes: float | None = None
    peak_bytes: int | None = None    # the estimate at micro_batch images

    def summary(self) -> dict:
        """Numbers worth logging with the trial."""
        out = {}
        if self.peak_bytes is not None:
            out["memory_estimate_gib"] = round(self.peak_bytes / GIB, 3)
        if self.budget_bytes is not None:
            out["memory_budget_gib"] = round(self.budget_bytes / GIB, 3)
        return out


def resolve_memory_mode(requested: str, device: torch.device) -> str:
    """``auto`` is lean on CUDA (memory is what limits a GPU trial) and plain on CPU."""
    if requested != "auto":
        return requested
    return "lean" if device.type == "cuda" else "plain"


def autocast_dtype(amp: bool, device: torch.device) -> torch.dtype | None:
    """bfloat16 autocast on a CUDA device that supports it; otherwise full float32."""
    if amp and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def resolve_channels_last(requested: bool | None, device: torch.device) -> bool:
    """``None`` (auto): channels_last on CUDA (tensor-core convolutions want NHWC), NCHW on CPU,
    where it measured slower for these models (docs/models-and-memory.md)."""
    return device.type == "cuda" if requested is None else bool(requested)


def device_budget(device: torch.device, budget_gb: float | None, gpu_share: float) -> float | None:
    """Bytes one trial may use: the configured budget, or on CUDA its share of the free memory."""
    if budget_gb is not None:
        return budget_gb * GIB
    if device.type != "cuda":
        return None
    free, total = torch.cuda.mem_get_info(device)
    share = total * gpu_share if 0 < gpu_share < 1 else total
    return (1 - KEEP_FREE) * min(free, share)


def plan_memory(model: torch.nn.Module, label: str, batch: int, *, memory: str, amp: bool,
                channels_last: bool | None, device: torch.device, budget_gb: float | None = None,
                gpu_share: float = 1.0) -> MemoryPlan:
    """Choose memory mode, precision, layout and micro-batch for training ``model`` at ``batch``."""
    from lensnets.memory import equal_micro_batch, estimate_train_memory, measure_train_step

    mode, dtype = resolve_memory_mode(memory, device), autocast_dtype(amp, device)
    layout = resolve_channels_last(channels_last, device)
    budget = device_budget(device, budget_gb, gpu_share)
    if budget is None:
        return MemoryPlan(mode, dtype, layout, batch, MAX_EVAL_BATCH)
    peak = lambda n: measure_train_step(model, n, memory_mode=mode, autocast_dtype=dtype,  # noqa: E731
                                        channels_last=layout).peak
    micro, used = batch, peak(batch)
    if used > budget:   # guess from the line through 1 and `batch` images, then check the guess
        estimate = estimate_train_memory(model, memory_mode=mode, autocast_dtype=dtype,
                                         channels_last=layout, batches=(1, max(2, batch)),
                                         known={batch: used})
        micro = equal_micro_batch(batch, estimate.largest_batch(budget))
        used = peak(micro)
        while used > budget and micro > 1:
            micro = equal_micro_batch(batch, micro - 1)
            used = peak(micro)
        if used > budget:
            raise TrialDoesNotFit(
                f"{label} needs {used / GIB:.3f} GiB for a step on one image ({mode} memory), "
                f"more than its {budget / GIB:.3f} GiB budget; use a smaller width or image size, "
                "a larger GPU share (tune.gpus_per_trial), or raise train.memory_budget_gb")
    return MemoryPlan(mode, dtype, layout, micro, min(MAX_EVAL_BATCH, 2 * micro), budget, used)
