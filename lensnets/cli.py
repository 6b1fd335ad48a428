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


def run_models(args: argparse.Namespace) -> int:
    widths = parse_widths(args.widths)
    rows = cost_rows(args.input_size, widths, args.width_mode, args.head, args.num_classes)
    print(f"# input {args.input_size}x{args.input_size} px, width mode {args.width_mode!r}, "
          f"head {args.head!r}, {args.num_classes} classes; MACs = conv + linear "
          "multiply-accumulates per image forward")
    print(format_rows(rows, args.markdown))
    return 0
