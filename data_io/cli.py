"""Subcommands of run_study.py contributed by this package: simulate, ingest, inspect."""
from __future__ import annotations

import argparse

PRESET_NAMES = ("model_i", "model_j", "small64", "binary")  # = data_io.PRESETS (kept light)


def _whole_number(minimum: int):
    """An argparse ``type`` accepting whole numbers >= ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text} must be >= {minimum}")
        return value
    return parse


_positive_int, _seed = _whole_number(1), _whole_number(0)


def _pixel_scale(text: str) -> float:
    """An argparse ``type``: a positive, finite number of arcsec per pixel."""
    from common.errors import UsageError
    from data_io.domain import check_pixel_scale

    try:
        return check_pixel_scale(text, name="")
    except UsageError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _simulate(args) -> int:
    from data_io.generate import simulate_dataset

    out = simulate_dataset(args.preset, args.per_class, args.out, seed=args.seed,
                           overwrite=args.overwrite, workers=args.workers,
                           progress=not args.quiet)
    print(f"wrote dataset {out}")
    return 0


def _ingest(args) -> int:
    from data_io.ingest import ingest_folder

    out = ingest_folder(args.src, args.out, allow_pickle=args.allow_pickle,
                        overwrite=args.overwrite, seed=args.seed, progress=not args.quiet,
                        pixel_scale=args.pixel_scale)
    print(f"wrote dataset {out}")
    return 0


def _inspect(args) -> int:
    from data_io.dataset_summary import inspect_dataset

    print(inspect_dataset(args.dir, png=args.png, per_class=args.examples))
    return 0


def register_simulate(subparsers) -> None:
    """Add ``simulate`` to run_study.py's parser."""
    p = subparsers.add_parser("simulate", help="simulate a lensing dataset (Parquet)",
                              description="Simulate strong-lensing images into a dataset folder.")
    p.add_argument("--preset", choices=PRESET_NAMES, default="model_i",
                   help="physics/instrument preset (default: model_i)")
    p.add_argument("--per-class", type=_positive_int, required=True, help="images per class")
    p.add_argument("--out", required=True, help="output dataset folder")
    p.add_argument("--seed", type=_seed, default=0, help="random seed (default 0)")
    p.add_argument("--workers", type=_positive_int, default=None,
                   help="worker processes (default: all cores for large runs)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_simulate)


def register_ingest(subparsers) -> None:
    """Add ``ingest`` to run_study.py's parser."""
    p = subparsers.add_parser("ingest", help="convert DeepLense-style folders to a dataset",
                              description="Ingest class folders of .npy/.jpg images.")
    p.add_argument("src", help="folder with class folders, or with train/ and val/")
    p.add_argument("--out", required=True, help="output dataset folder")
    p.add_argument("--allow-pickle", action="store_true",
                   help="read pickled .npy object arrays (runs code from the files: trusted data only)")
    p.add_argument("--seed", type=_seed, default=0, help="seed for the split (default 0)")
    p.add_argument("--pixel-scale", type=_pixel_scale, default=None, metavar="ARCSEC",
                   help="arcsec per pixel of the images (e.g. 0.05 for Model I); recorded so that "
                        "`evaluate` can compare fields of view and --match-field can resample "
                        "(default: unknown)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_ingest)


def register_inspect(subparsers) -> None:
    """Add ``inspect`` to run_study.py's parser."""
    p = subparsers.add_parser("inspect", help="schema, class counts and example grid of a dataset",
                              description="Print a dataset's schema, counts, value ranges and "
                              "write a PNG grid of examples per class.")
    p.add_argument("dir", help="dataset folder")
    p.add_argument("--png", default=None, help="where to write the grid (default DIR/examples.png)")
    p.add_argument("--examples", type=_positive_int, default=4, help="examples per class (default 4)")
    p.set_defaults(func=_inspect)
