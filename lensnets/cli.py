"""Subcommands of run_study.py contributed by this package: ``models`` (the cost table)."""
from __future__ import annotations

import argparse

from common.errors import UsageError

from .config import GROUPS, HEADS, WIDTH_MODES, ModelConfig


def register(subparsers) -> None:
    """Add this package's subcommands to run_study.py's parser."""
    parser = subparsers.add_parser(
        "models", help="list every model with its parameters and MACs per image",
        description="Parameters and multiply-accumulates per image forward for every symmetry "
                    "group at a few widths, and for the ResNet-18 baseline.")
    parser.add_argument("--input-size", type=int, default=129, metavar="PX",
                        help="image side in pixels, 4k+1 (default 129; the laptop study uses 65)")
    parser.add_argument("--widths", default="0.25,0.5,1", metavar="W,W,...",
                        help="comma-separated width multipliers (default 0.25,0.5,1)")
    parser.add_argument("--width-mode", choices=WIDTH_MODES, default="fields",
                        help="what width keeps fixed across groups (default fields)")
    parser.add_argument("--head", choices=HEADS, default="invariant")
    parser.add_argument("--num-classes", type=int, default=3)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    memory = parser.add_argument_group("training memory (--memory)")
    memory.add_argument("--memory", action="store_true",
                        help="instead: peak memory of one training step, plain and lean mode")
    memory.add_argument("--batch", type=int, default=64, help="images per step (default 64)")
    memory.add_argument("--precision", choices=("bf16", "fp32"), default="bf16",
                        help="bf16 autocast as CUDA training runs it (default), or float32")
    memory.add_argument("--gpu-gib", type=float, default=22.0, metavar="GIB",
                        help="GPU memory for the micro-batch column (default 22: an A10G's 24 GB "
                             "less the CUDA context and 10%% kept free)")
    memory.add_argument("--device", default="cpu",
                        help="cpu: fake-tensor estimate (default); cuda: a real step, "
                             "torch.cuda.max_memory_allocated")
    memory.add_argument("--json", action="store_true", help="print one JSON list")
    parser.set_defaults(func=run_models)


def parse_widths(text: str) -> list[float]:
    try:
        widths = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--widths {text!r} is not a comma-separated list of numbers") from None
    if not widths:
        raise UsageError("--widths is empty; give e.g. --widths 0.25,0.5,1")
    return widths


def cost_rows(input_size: int, widths: list[float], width_mode: str, head: str,
              num_classes: int) -> list[dict]:
    """One row per (group, width) and one for resnet18: fields, channels, params, MACs."""
    from .factory import build_model, count_params
    from .plain import count_macs
    from .steerable import steerable_param_count

    rows = []
    for group in GROUPS:
        for width in widths:
            config = ModelConfig(name=group, width=width, width_mode=width_mode, head=head,
                                 num_classes=num_classes, input_size=input_size)
            rows.append({"model": group, "width": width, "order": config.group_order,
                         "fields": "-".join(map(str, config.fields())),
                         "channels": "-".join(map(str, config.channels())),
                         "params": steerable_param_count(config), "macs": count_macs(config)})
    resnet = ModelConfig(name="resnet18", num_classes=num_classes, input_size=input_size)
    rows.append({"model": "resnet18", "width": 1.0, "order": 1, "fields": "-", "channels": "-",
                 "params": count_params(build_model(resnet)), "macs": count_macs(resnet)})
    return rows


def format_rows(rows: list[dict], markdown: bool) -> str:
    header = ["model", "|G|", "width", "fields per block", "channels per block", "params",
              "GMAC/image"]
    cells = [[r["model"], str(r["order"]), f"{r['width']:g}", r["fields"], r["channels"],
              f"{r['params']:,}", f"{r['macs'] / 1e9:.3f}"] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])
    widths = [max(len(row[i]) for row in [header] + cells) for i in range(len(header))]
    return "\n".join("  ".join(v.rjust(w) if i >= 5 else v.ljust(w)
                               for i, (v, w) in enumerate(zip(row, widths))).rstrip()
                     for row in [header] + cells)


def memory_rows(input_size: int, widths: list[float], width_mode: str, num_classes: int,
                batch: int, precision: str, gpu_gib: float, device: str) -> list[dict]:
    """Peak memory of one training step for every (model, width) in plain and lean mode."""
    import torch

    from .factory import build_model
    from .memory import GIB, measure_cuda_step, measure_train_step

    dtype = torch.bfloat16 if precision == "bf16" else None
    configs = [ModelConfig(name=g, width=w, width_mode=width_mode, num_classes=num_classes,
                           input_size=input_size) for g in GROUPS for w in widths]
    configs.append(ModelConfig(name="resnet18", num_classes=num_classes, input_size=input_size))
    rows = []
    for config in configs:
        model = build_model(config).to(device)
        for mode in ("plain", "lean"):
            row = {"model": config.name, "width": config.width if config.is_steerable else None,
                   "batch": batch, "mode": mode, "precision": precision, "device": device}
            if device.startswith("cuda"):
                try:
                    row["peak"] = measure_cuda_step(model, batch, memory_mode=mode, autocast_dtype=dtype)
                except torch.OutOfMemoryError:
                    row["peak"] = None
                torch.cuda.empty_cache()
            else:
                step = measure_train_step(model, batch, memory_mode=mode, autocast_dtype=dtype)
                row.update(step.to_dict())
            row["fits_micro_batch"] = _micro_batch(row.get("peak"), row.get("activations"),
                                                   batch, gpu_gib * GIB)
            rows.append(row)
        del model
    return rows


def _micro_batch(peak: int | None, activations: int | None, batch: int, budget: float) -> int:
    """The equal micro-batch that fits ``budget`` (activations scale with the images; 0: none)."""
    from .memory import MemoryEstimate, equal_micro_batch

    if peak is None or activations is None:   # a CUDA measurement: the whole batch, or nothing
        return batch if peak is not None and peak <= budget else 0
    per_image = max(1, activations // batch)
    capacity = MemoryEstimate(fixed=peak - activations, per_image=per_image).largest_batch(budget)
    return equal_micro_batch(batch, capacity) if capacity >= 1 else 0


def format_memory(rows: list[dict], gpu_gib: float) -> str:
    mib = lambda v: "-" if v is None else f"{v / 2 ** 20:,.1f}"  # noqa: E731
    header = ["model", "width", "batch", "mode", "params MiB", "grads MiB", "optimiser MiB",
              "activations MiB", "peak GiB", f"micro-batch on {gpu_gib:g} GiB"]
    cells = [[r["model"], "-" if r["width"] is None else f"{r['width']:g}", str(r["batch"]), r["mode"],
              mib(r.get("params")), mib(r.get("grads")), mib(r.get("optimizer")),
              mib(r.get("activations")),
              "OOM" if r.get("peak") is None else f"{r['peak'] / 2 ** 30:.2f}",
              str(r["fits_micro_batch"] or "does not fit")] for r in rows]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])


def run_models(args: argparse.Namespace) -> int:
    widths = parse_widths(args.widths)
    if args.memory:
        return run_memory(args, widths)
    rows = cost_rows(args.input_size, widths, args.width_mode, args.head, args.num_classes)
    print(f"# input {args.input_size}x{args.input_size} px, width mode {args.width_mode!r}, "
          f"head {args.head!r}, {args.num_classes} classes; MACs = conv + linear "
          "multiply-accumulates per image forward")
    print(format_rows(rows, args.markdown))
    return 0


def run_memory(args: argparse.Namespace, widths: list[float]) -> int:
    import json

    if args.batch < 1:
        raise UsageError(f"--batch must be a positive number of images, not {args.batch}")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is visible; drop --device for the CPU estimate")
    ModelConfig(input_size=args.input_size)   # a bad size fails here, with the models' own message
    rows = memory_rows(args.input_size, widths, args.width_mode, args.num_classes, args.batch,
                       args.precision, args.gpu_gib, args.device)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    how = ("torch.cuda.max_memory_allocated of a real second step" if args.device.startswith("cuda")
           else "fake-tensor step on the CPU: bytes of live tensor storages (lensnets/memory.py)")
    print(f"# one AdamW training step, {args.batch} images of {args.input_size}x{args.input_size} px, "
          f"{args.precision}, width mode {args.width_mode!r}; {how}")
    print(format_memory(rows, args.gpu_gib))
    return 0
