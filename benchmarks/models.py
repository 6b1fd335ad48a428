#!/usr/bin/env python
"""Train and inference speed of the steerable CNNs against their hardware bound.

For each (group, width, input size) it prints, as medians of timed steps measured in this run:

- train-step images/s (forward + backward + Adam step, train mode) of the e2cnn model and of
  ``plain_twin``: a plain ``torch.nn.Conv2d`` network with identical layer shapes (the bound for
  this architecture), and their time ratio (target: steerable <= 1.15 x plain);
- eval-mode inference images/s of the e2cnn model, of its ``export_model`` copy and of the plain
  twin, and the time ratio of the exported copy (what ``best`` ships) to the plain twin.

Steerable and plain steps alternate (ABAB...) so background load hits both alike.

    python benchmarks/models.py              # --quick: 3 models x 65 and 129 px, a minute or two
    python benchmarks/models.py --full       # more groups and widths
    python benchmarks/models.py --threads 2 --channels-last
    python benchmarks/models.py --models SO2:0.25,O2:0.25   # chosen group:width pairs
    python benchmarks/models.py --compile --sizes 65     # torch.compile against eager, every model

``--compile`` prints, per model, the seconds of the first compiled training step (compiling), the
train images/s eager and compiled (``lensnets.compiled.CompiledForward``, as ``train.compile``
runs it) and the inference images/s of the exported copy eager and compiled, with the speed-ups.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from lensnets import ModelConfig, build_model, count_macs, export_model, plain_twin  # noqa: E402
from lensnets.compiled import CompiledForward  # noqa: E402

QUICK = [("C8", 0.25), ("D4", 0.25), ("trivial", 1.0)]
EVERY = [("trivial", 1.0), ("C4", 0.25), ("C8", 0.25), ("C16", 0.25), ("D4", 0.25), ("D8", 0.25),
         ("SO2", 0.25), ("O2", 0.25), ("resnet18", 1.0)]
FULL = QUICK + [("C4", 0.5), ("C16", 0.125), ("D8", 0.125), ("C8", 0.5)]
BATCH = {65: 32, 129: 8}


def train_step(model, optimiser, x, y) -> float:
    start = time.perf_counter()
    optimiser.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimiser.step()
    return time.perf_counter() - start


def infer_step(model, x) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        model(x)
    return time.perf_counter() - start


def alternate(steps: int, *fns) -> list[float]:
    """Median seconds of each fn, calling them in turn ``steps`` times after one warm-up each."""
    times = [[] for _ in fns]
    for fn in fns:
        fn()
    for _ in range(steps):
        for fn, bucket in zip(fns, times):
            bucket.append(fn())
    return [statistics.median(t) for t in times]


def bench(group: str, width: float, size: int, steps: int, channels_last: bool, device) -> dict:
    config = ModelConfig(name=group, width=width, input_size=size)
    batch = BATCH.get(size, 16)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(batch, 1, size, size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, config.num_outputs, (batch,), device=device)
    torch.manual_seed(0)
    steer = build_model(config).to(device, memory_format=fmt)
    plain = plain_twin(config).to(device, memory_format=fmt)
    opt_s = torch.optim.Adam(steer.parameters(), 1e-4)
    opt_p = torch.optim.Adam([p for p in plain.parameters() if p.requires_grad], 1e-4)
    t_steer, t_plain = alternate(steps, lambda: train_step(steer, opt_s, x, y),
                                 lambda: train_step(plain, opt_p, x, y))
    steer.eval()
    plain.eval()
    exported = export_model(steer).to(memory_format=fmt)
    t_e2cnn, t_export, t_plain_eval = alternate(steps, lambda: infer_step(steer, x), lambda: infer_step(exported, x),
                                                lambda: infer_step(plain, x))
    return {"model": group, "width": width, "px": size, "batch": batch,
            "gmac": count_macs(config) / 1e9, "steer": batch / t_steer, "plain": batch / t_plain,
            "ratio": t_steer / t_plain, "e2cnn": batch / t_e2cnn, "export": batch / t_export,
            "plain_eval": batch / t_plain_eval, "eval_ratio": t_export / t_plain_eval}


def bench_compiled(group: str, width: float, size: int, steps: int, device) -> dict:
    """Eager against ``torch.compile`` for one model: training step and exported inference."""
    config = ModelConfig(name=group, width=width, input_size=size)
    batch = BATCH.get(size, 16)
    x = torch.randn(batch, 1, size, size, device=device)
    y = torch.randint(0, config.num_outputs, (batch,), device=device)
    torch.manual_seed(0)
    eager = build_model(config).to(device)
    torch.manual_seed(0)
    compiled = CompiledForward(build_model(config).to(device), group)
    optimisers = [torch.optim.Adam(m.parameters(), 1e-4) for m in (eager, compiled.model)]
    first_compiled = train_step(compiled, optimisers[1], x, y)          # compiles
    t_eager, t_compiled = alternate(steps, lambda: train_step(eager, optimisers[0], x, y),
                                    lambda: train_step(compiled, optimisers[1], x, y))
    exported = export_model(eager.eval())
    compiled_export = CompiledForward(exported, f"{group} exported")
    first_export = infer_step(compiled_export, x)                        # compiles
    e_eager, e_compiled = alternate(steps, lambda: infer_step(exported, x), lambda: infer_step(compiled_export, x))
    fell_back = [type(f.error).__name__ for f in (compiled, compiled_export) if f.error is not None]
    return {"model": group, "width": width, "px": size, "compile_s": first_compiled,
            "eager": batch / t_eager, "compiled": batch / t_compiled, "speedup": t_eager / t_compiled,
            "export_compile_s": first_export, "export": batch / e_eager, "export_compiled": batch / e_compiled,
            "export_speedup": e_eager / e_compiled, "fell_back": ",".join(fell_back) or "-"}


def main_compiled(args, pairs, sizes, device) -> int:
    print(f"# device {device}, {args.threads} threads, torch {torch.__version__}, median of {args.steps} steps; "
          "compile s = the first compiled step")
    print(f"{'model':8} {'width':>5} {'px':>4} | {'compile s':>9} {'eager img/s':>11} {'compiled':>9} "
          f"{'speedup':>7} | {'compile s':>9} {'export inf/s':>12} {'compiled':>9} {'speedup':>7} fell back")
    for size in sizes:
        for group, width in pairs:
            r = bench_compiled(group, width, size, args.steps, device)
            print(f"{r['model']:8} {r['width']:5g} {r['px']:4d} | {r['compile_s']:9.1f} {r['eager']:11.1f} "
                  f"{r['compiled']:9.1f} {r['speedup']:7.2f} | {r['export_compile_s']:9.1f} "
                  f"{r['export']:12.1f} {r['export_compiled']:9.1f} {r['export_speedup']:7.2f} {r['fell_back']}",
                  flush=True)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", default=True, help="default: 3 models")
    mode.add_argument("--full", action="store_true", help="7 group/width pairs")
    parser.add_argument("--models", metavar="G:W,...",
                        help="instead of --quick/--full: these group:width pairs, e.g. SO2:0.25")
    parser.add_argument("--sizes", default="65,129", help="input sizes (default 65,129)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--channels-last", action="store_true", help="NHWC tensors for both nets")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile against eager for every model (or --models)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.models:
        pairs = [(g, float(w)) for g, w in (item.split(":") for item in args.models.split(","))]
    else:
        pairs = EVERY if args.compile else FULL if args.full else QUICK
    if args.compile:
        return main_compiled(args, pairs, sizes, device)
    print(f"# device {device}, {args.threads} threads, torch {torch.__version__}, "
          f"{'channels_last' if args.channels_last else 'NCHW'}, median of {args.steps} steps")
    print(f"{'model':8} {'width':>5} {'px':>4} {'batch':>5} {'GMAC':>7} | {'train img/s':>11} "
          f"{'plain img/s':>11} {'ratio':>6} | {'e2cnn inf/s':>11} {'export inf/s':>12} "
          f"{'plain inf/s':>11} {'ratio':>6}")
    for size in sizes:
        for group, width in pairs:
            r = bench(group, width, size, args.steps, args.channels_last, device)
            print(f"{r['model']:8} {r['width']:5g} {r['px']:4d} {r['batch']:5d} {r['gmac']:7.3f} | "
                  f"{r['steer']:11.1f} {r['plain']:11.1f} {r['ratio']:6.2f} | "
                  f"{r['e2cnn']:11.1f} {r['export']:12.1f} {r['plain_eval']:11.1f} {r['eval_ratio']:6.2f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
