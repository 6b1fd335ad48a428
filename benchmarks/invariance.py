#!/usr/bin/env python
"""How invariant are the untrained models' logits to rotations off the pixel grid?

For each group, model seed and angle it prints the median and max, over the images, of the
relative logit deviation

    dev(x, a) = RMS_k |z_k(R_a x) - z_k(x)| / s,   s = RMS_k std_i z_k(x_i)

(z_k: logit k; s: how much the logits differ between the images, so dev = 1 means the rotation
changes the logits as much as changing the image does). The images are sums of 6 Gaussian blobs
(sigma 1.5-3.5 px, centres within a quarter of the side of the centre) times the disc mask,
sampled analytically at rotated coordinates, so the rotated image has no interpolation error:
what remains is the network's own discretisation (sampled filters, stride-2 pools). Images are
seeded (0 .. n-1) and the same for every group; batch-norm running statistics are those of the
unrotated images (one train-mode pass, cumulative average); width mode ``channels`` so every
group has the same channels per block. The 90-degree column is exact for C4 and above.

    python benchmarks/invariance.py                     # 65 px, width 0.25, seeds 0,1: ~1.5 min
    python benchmarks/invariance.py --size 37 --width 0.125 --markdown
    python benchmarks/invariance.py --groups SO2,O2 --seeds 0,1,2,3 --decompose
    python benchmarks/invariance.py --groups SO2,O2 --seeds 0,1,2,3 --size 37 --width 0.125 --per-block

``--decompose`` splits each group's relative deviation (medians over seeds, images and the
off-grid angles 30, 45, 73) into its numerator and denominator, for the logits and for the pooled
invariant features the head receives (averaged over space): how much the rotation changes them,
and how much they differ between images. ``--per-block`` (SO2/O2) follows the deviation through
the network: after each block, the relative deviation of each irrep's norm averaged over space
(median over fields, seeds and the off-grid angles), one column per irrep.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from lensnets import ModelConfig, build_model  # noqa: E402
from lensnets.band import BandBatchNorm  # noqa: E402
from tests.support.probes import blob_images  # noqa: E402

GROUPS = ("trivial", "C4", "C8", "C16", "SO2", "O2")
ANGLES = (30.0, 45.0, 73.0, 90.0)


def smooth_images(size: int, angle_deg: float, count: int) -> torch.Tensor:
    """Disc-masked blob images rotated by ``angle_deg`` (``tests.support.probes.blob_images``)."""
    return blob_images(size, math.radians(angle_deg), count, disc=True)


def calibrated_model(group: str, seed: int, size: int, width: float, images: torch.Tensor):
    """An untrained model (seed) whose batch-norm running statistics are those of ``images``."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(name=group, width=width, width_mode="channels", input_size=size))
    for module in model.modules():
        if isinstance(module, (torch.nn.modules.batchnorm._BatchNorm, BandBatchNorm)):
            module.momentum = None   # cumulative average: one pass gives the batch's statistics
    model.train()
    with torch.no_grad():
        model(images)
    return model.eval()


@torch.no_grad()
def deviations(model, size: int, count: int, angles) -> dict[float, list[float]]:
    """angle -> dev(x_i, angle) for every image (module docstring)."""
    reference = model(smooth_images(size, 0.0, count))
    spread = reference.std(0).pow(2).mean().sqrt()
    return {a: ((model(smooth_images(size, a, count)) - reference).pow(2).mean(1).sqrt() / spread).tolist()
            for a in angles}


OFF_GRID = (30.0, 45.0, 73.0)


@torch.no_grad()
def decomposition(model, size: int, count: int) -> dict[str, list[float]]:
    """Absolute change under the off-grid rotations and between-image spread, of the logits and
    of the head's input (pooled invariant features averaged over space), per image and angle."""
    pooled = {}
    hook = model.head.register_forward_pre_hook(lambda m, args: pooled.__setitem__("x", args[0].mean((2, 3))))
    try:
        logits = model(smooth_images(size, 0.0, count))
        features = pooled["x"]
        out = {"logit_change": [], "feature_change": [],
               "logit_spread": [float(logits.std(0).pow(2).mean().sqrt())],
               "feature_spread": [float(features.std(0).pow(2).mean().sqrt())]}
        for angle in OFF_GRID:
            turned = model(smooth_images(size, angle, count))
            out["logit_change"] += (turned - logits).pow(2).mean(1).sqrt().tolist()
            out["feature_change"] += (pooled["x"] - features).pow(2).mean(1).sqrt().tolist()
    finally:
        hook.remove()
    return out


def print_decomposition(groups, seeds, args, calibration) -> None:
    print(f"# {args.size} px, width {args.width:g} (channels mode), {args.images} images, seeds "
          f"{','.join(map(str, seeds))}, angles 30/45/73: medians of the rotation's change and of the "
          "between-image spread")
    print("| model | logit change | logit spread | relative | feature change | feature spread | relative |")
    print("|---|---|---|---|---|---|---|")
    for group in groups:
        parts: dict[str, list[float]] = {}
        for seed in seeds:
            model = calibrated_model(group, seed, args.size, args.width, calibration)
            for key, values in decomposition(model, args.size, args.images).items():
                parts.setdefault(key, []).extend(values)
        m = {key: statistics.median(values) for key, values in parts.items()}
        print(f"| {group} | {m['logit_change']:.4f} | {m['logit_spread']:.4f} | "
              f"{m['logit_change'] / m['logit_spread']:.3f} | {m['feature_change']:.4f} | "
              f"{m['feature_spread']:.4f} | {m['feature_change'] / m['feature_spread']:.3f} |", flush=True)


@torch.no_grad()
def per_block(group: str, seeds, args, calibration) -> list[list[list[float]]]:
    """[block][irrep] -> relative deviations of the irrep's spatially averaged norm (band groups)."""
    from lensnets.band import BandNormReLU, IrrepNorms
    from lensnets.config import field_irreps

    irreps = len(field_irreps(group))
    table = [[[] for _ in range(irreps)] for _ in range(6)]
    for seed in seeds:
        model = calibrated_model(group, seed, args.size, args.width, calibration)
        norms = {}
        hooks = [m.register_forward_hook(lambda m, i, out, k=k: norms.__setitem__(k, IrrepNorms(group, m.fields)(out)
                                                                                  .mean((2, 3))))
                 for k, m in enumerate(x for x in model.modules() if isinstance(x, BandNormReLU))]
        model(smooth_images(args.size, 0.0, args.images))
        reference = dict(norms)
        for angle in OFF_GRID:
            model(smooth_images(args.size, angle, args.images))
            for block, ref in reference.items():
                rel = ((norms[block] - ref).pow(2).mean(0).sqrt() / ref.std(0).clamp_min(1e-12)).unflatten(0, (-1, irreps))
                for irrep in range(irreps):
                    table[block][irrep].append(float(rel[:, irrep].median()))
        for hook in hooks:
            hook.remove()
    return table


def print_per_block(groups, seeds, args, calibration) -> None:
    print(f"# {args.size} px, width {args.width:g} (channels mode), {args.images} images, seeds "
          f"{','.join(map(str, seeds))}, angles 30/45/73: relative deviation of each irrep's mean norm")
    for group in groups:
        for block, per_irrep in enumerate(per_block(group, seeds, args, calibration), start=1):
            cells = " ".join(f"{statistics.median(v):.3f}" for v in per_irrep)
            print(f"{group} block {block}: {cells}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=65, help="input pixels, 4k+1 (default 65)")
    parser.add_argument("--width", type=float, default=0.25, help="width, channels mode (default 0.25)")
    parser.add_argument("--images", type=int, default=16, help="images (seeds 0..n-1, default 16)")
    parser.add_argument("--seeds", default="0,1", help="model seeds (default 0,1)")
    parser.add_argument("--groups", default=",".join(GROUPS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--decompose", action="store_true",
                        help="per group: the rotation's change and the between-image spread, logits and features")
    parser.add_argument("--per-block", action="store_true",
                        help="SO2/O2: each block's deviation per irrep (trivial, psi_1, psi_2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    calibration = smooth_images(args.size, 0.0, args.images)
    if args.per_block:
        print_per_block(args.groups.split(","), seeds, args, calibration)
        return 0
    if args.decompose:
        print_decomposition(args.groups.split(","), seeds, args, calibration)
        return 0
    cols = [f"{a:g} deg median / max" for a in ANGLES]
    print(f"# {args.size} px, width {args.width:g} (channels mode), {args.images} images, "
          f"untrained models; relative logit deviation (see benchmarks/invariance.py)")
    if args.markdown:
        print("| model | seed | " + " | ".join(cols) + " |\n|" + "---|" * (2 + len(cols)))
    else:
        print(f"{'model':8} {'seed':>4} " + " ".join(f"{c:>22}" for c in cols))
    for group in args.groups.split(","):
        for seed in seeds:
            model = calibrated_model(group, seed, args.size, args.width, calibration)
            devs = deviations(model, args.size, args.images, ANGLES)
            cells = [f"{statistics.median(devs[a]):.3f} / {max(devs[a]):.3f}" for a in ANGLES]
            if args.markdown:
                print(f"| {group} | {seed} | " + " | ".join(cells) + " |", flush=True)
            else:
                print(f"{group:8} {seed:4d} " + " ".join(f"{c:>22}" for c in cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
