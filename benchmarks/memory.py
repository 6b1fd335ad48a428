#!/usr/bin/env python
"""Lean against plain training memory: step time and peak memory, measured in one run.

For each model it prints the median train-step time (forward + backward + AdamW, train mode) in
plain and lean memory mode, steps alternating (plain, lean, plain, ...) so background load hits
both alike, their ratio (goal for the seed C8 network: lean <= 1.35 x plain), and the peak step
memory of each mode (``lensnets.memory``: fake-tensor count on the CPU, or
``torch.cuda.max_memory_allocated`` on CUDA) with the ratio lean / plain of the activations.

    python benchmarks/memory.py                       # C8 width 1 (the seed network), 129 px
    python benchmarks/memory.py --models C8:1,D8:0.5,C4:1 --batch 4 --steps 5
    python benchmarks/memory.py --device cuda --batch 64 --bf16 --channels-last
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from lensnets import ModelConfig, build_model, set_memory_mode  # noqa: E402
from lensnets.memory import MIB, measure_cuda_step, measure_train_step  # noqa: E402


def timed_step(model, optimiser, x, y, dtype) -> float:
    if x.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    optimiser.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
        logits = model(x)
    torch.nn.functional.cross_entropy(logits.float(), y).backward()
    optimiser.step()
    if x.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench(name: str, width: float, args, device) -> dict:
    config = ModelConfig(name=name, width=width, input_size=args.input_size)
    torch.manual_seed(0)
    base = build_model(config).to(device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    dtype = torch.bfloat16 if args.bf16 else None
    x = torch.randn(args.batch, 1, args.input_size, args.input_size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, config.num_outputs, (args.batch,), device=device)
    models = {m: set_memory_mode(copy.deepcopy(base), m).train().to(memory_format=fmt) for m in ("plain", "lean")}
    optims = {m: torch.optim.AdamW(models[m].parameters(), 1e-4) for m in models}
    times = {m: [] for m in models}
    for m in models:   # warm-up
        timed_step(models[m], optims[m], x, y, dtype)
    for _ in range(args.steps):
        for m in models:
            times[m].append(timed_step(models[m], optims[m], x, y, dtype))
    row = {"model": name, "width": width, "batch": args.batch,
           **{f"{m}_s": statistics.median(t) for m, t in times.items()}}
    for m in models:
        if device.type == "cuda":
            row[f"{m}_peak"] = measure_cuda_step(base, args.batch, memory_mode=m, autocast_dtype=dtype,
                                                 channels_last=args.channels_last)
            row[f"{m}_act"] = row[f"{m}_peak"]
        else:
            step = measure_train_step(base, args.batch, memory_mode=m, autocast_dtype=dtype,
                                      channels_last=args.channels_last)
            row[f"{m}_peak"], row[f"{m}_act"] = step.peak, step.activations
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="C8:1", help="NAME:WIDTH,... (default C8:1)")
    parser.add_argument("--input-size", type=int, default=129)
    parser.add_argument("--batch", type=int, default=2, help="images per step (default 2 on a CPU)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per mode (default 3)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"# device {device}, {args.threads} threads, torch {torch.__version__}, {args.input_size} px, "
          f"{'bf16' if args.bf16 else 'fp32'}, {'channels_last' if args.channels_last else 'NCHW'}, "
          f"median of {args.steps} alternating steps")
    print(f"{'model':8} {'width':>5} {'batch':>5} | {'plain s':>8} {'lean s':>8} {'ratio':>6} "
          f"{'plain img/s':>11} {'lean img/s':>10} | {'plain MiB':>10} {'lean MiB':>10} {'act ratio':>9}")
    for item in args.models.split(","):
        name, _, width = item.partition(":")
        r = bench(name, float(width or 1), args, device)
        print(f"{r['model']:8} {r['width']:5g} {r['batch']:5d} | {r['plain_s']:8.3f} {r['lean_s']:8.3f} "
              f"{r['lean_s'] / r['plain_s']:6.2f} {r['batch'] / r['plain_s']:11.1f} "
              f"{r['batch'] / r['lean_s']:10.1f} | {r['plain_peak'] / MIB:10.1f} {r['lean_peak'] / MIB:10.1f} "
              f"{r['lean_act'] / r['plain_act']:9.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
