"""Ingest existing DeepLense-style folders into the dataset format.

Accepted layouts (``SRC`` is the folder given):

- class folders directly under SRC (Model I-III: ``no_sub/ cdm/ axion/``; binary set:
  ``no_sub/ sub/``): split here, stratified and seeded (80/10/10);
- ``SRC/train/<classes>`` and ``SRC/val/<classes>`` (seeds' Model F/J; optional ``test/``):
  ``train`` is cut into train + val (8:1), ``val`` becomes the test split; with a ``test/``
  folder, ``val`` and ``test`` are kept as they are.

Files: ``.npy`` (2-D, or ``(1, H, W)``; the ``axion`` object arrays ``[image, mass]`` only with
``allow_pickle``, since unpickling can run code from the file) and ``.jpg/.jpeg/.png``
(converted to 8-bit grayscale).

The pixel scale (arcsec per pixel) is not in the files: pass it as ``pixel_scale`` (``ingest
--pixel-scale``) to record it in the metadata, so ``evaluate`` can compare the set's field of
view with a model's and ``evaluate --match-field`` can resample it (``data_io.domain``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from common.atomic import atomic_dir
from common.errors import UsageError
from data_io.dataset import SPLITS, DatasetWriter, check_output, stratified_split
from data_io.domain import check_pixel_scale

CLASS_ALIASES = {"no": "no_sub", "no_sub": "no_sub", "nosub": "no_sub",
                 "sphere": "cdm", "cdm": "cdm", "sub": "cdm",
                 "vort": "vortex", "vortex": "vortex", "axion": "vortex"}
IMAGE_SUFFIXES = {".npy", ".jpg", ".jpeg", ".png"}
BATCH = 256


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _class_folders(folder: Path) -> dict[str, list[Path]]:
    """Map canonical class -> sorted files, checking names, emptiness and suffixes."""
    out: dict[str, list[Path]] = {}
    for sub in _visible(folder):
        if not sub.is_dir():
            continue
        canon = CLASS_ALIASES.get(sub.name.lower())
        if canon is None:
            raise UsageError(f"unknown class folder {sub}; expected names like "
                             f"{', '.join(sorted(CLASS_ALIASES))}")
        files = [p for p in _visible(sub) if p.is_file()]
        if not files:
            raise UsageError(f"class folder {sub} has no files; add images or remove it")
        bad = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
        if bad:
            raise UsageError(f"unsupported file {bad[0]}; expected .npy, .jpg or .png")
        out.setdefault(canon, []).extend(files)
    if not out:
        raise UsageError(f"source folder {folder} has no class folders; expected e.g. "
                         "no_sub/ cdm/ axion/ or train/ and val/ with no/ sphere/ vort/")
    return out


def _class_names(found: set[str], src: Path) -> list[str]:
    if found == {"no_sub", "cdm", "vortex"}:
        return ["no_sub", "cdm", "vortex"]
    if found == {"no_sub", "cdm"}:
        return ["no_sub", "sub"]
    raise UsageError(f"{src} has classes {sorted(found)}; need no_sub + sub (binary) or "
                     "no_sub + cdm + vortex (three classes)")


def _plan(src: Path, seed: int) -> tuple[list[str], dict[str, list[tuple[Path, int]]]]:
    """Class names and, per split, the ``(file, label)`` list in writing order."""
    parts = {p.name.lower(): p for p in _visible(src) if p.is_dir()}
    if "train" in parts:
        groups = {name: _class_folders(parts[name]) for name in ("train", "val", "test")
                  if name in parts}
    else:
        groups = {"all": _class_folders(src)}
    names = _class_names(set().union(*[set(g) for g in groups.values()]), src)
    index = {c: i for i, c in enumerate(names)}
    items = {g: [(f, index["sub" if c == "cdm" and "sub" in names else c])
                 for c, files in cls.items() for f in files] for g, cls in groups.items()}
    rng = np.random.default_rng(seed)
    plan: dict[str, list] = {s: [] for s in SPLITS}

    def cut(rows, fractions, targets):
        split = stratified_split(np.array([lab for _, lab in rows]), fractions, seed)
        for k, t in enumerate(targets):
            plan[t] += [rows[i] for i in np.flatnonzero(split == k)]

    if "all" in items:
        cut(items["all"], (0.8, 0.1, 0.1), SPLITS)
    else:
        cut(items["train"], (8 / 9, 1 / 9, 0.0) if "test" in items or "val" in items
            else (0.8, 0.1, 0.1), SPLITS)
        if "test" in items:
            plan["val"] += items.get("val", [])
            plan["test"] += items["test"]
        else:
            plan["test"] += items.get("val", [])
    for s in SPLITS:
        plan[s] = [plan[s][i] for i in rng.permutation(len(plan[s]))]
    return names, plan


def _refuse_pickles(files) -> None:
    """Read only the .npy headers (no data, no unpickling) to refuse object arrays up front."""
    for f in files:
        if f.suffix.lower() != ".npy":
            continue
        try:
            with open(f, "rb") as fh:
                version = np.lib.format.read_magic(fh)
                read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                        else np.lib.format.read_array_header_2_0)
                dtype = read(fh)[2]
        except Exception:  # noqa: BLE001 - reported with the file name when read for real
            continue
        if dtype.hasobject:
            raise UsageError(f"{f} holds pickled objects; reading it can run code from the "
                             "file - pass --allow-pickle only if you trust it")


def read_image(path: Path, allow_pickle: bool) -> tuple[np.ndarray, float]:
    """``(image float32 [H, W], axion mass or NaN)``; ``UsageError`` naming the file if bad."""
    mass = np.nan
    try:
        if path.suffix.lower() == ".npy":
            try:
                arr = np.load(path, allow_pickle=False)
            except ValueError as err:
                if "pickle" not in str(err).lower():
                    raise
                if not allow_pickle:
                    raise UsageError(f"{path} holds pickled objects; reading it can run code "
                                     "from the file - pass --allow-pickle only if you trust it")
                arr = np.load(path, allow_pickle=True)
            if arr.dtype == object:
                flat = list(np.asarray(arr).ravel())
                arr = np.asarray(flat[0], dtype=np.float64)
                mass = float(flat[1]) if len(flat) > 1 else np.nan
        else:
            from PIL import Image

            with Image.open(path) as im:
                arr = np.asarray(im.convert("L"))
    except UsageError:
        raise
    except Exception as err:  # noqa: BLE001 - any decoder failure is a bad file
        raise UsageError(f"cannot read {path} ({type(err).__name__}: {err}); "
                         "the file is truncated or not an image") from None
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise UsageError(f"{path} holds an array of shape {arr.shape} ({arr.dtype}); "
                         "expected a 2-D image or (1, H, W)")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise UsageError(f"{path} contains NaN or infinite pixels; fix or remove the file")
    return arr, mass


def ingest_folder(src, out, *, allow_pickle: bool = False, overwrite: bool = False,
                  seed: int = 0, progress: bool = True, pixel_scale: float | None = None) -> Path:
    """Convert a DeepLense-style folder (see module docstring) into a dataset at ``out``.

    ``pixel_scale`` (arcsec per pixel, optional) is recorded in the metadata; unknown if ``None``.
    """
    if pixel_scale is not None:
        pixel_scale = check_pixel_scale(pixel_scale)
    src = Path(src)
    if not src.is_dir():
        raise UsageError(f"source folder {src} does not exist; give the folder that holds "
                         "the class folders")
    if not _visible(src):
        raise UsageError(f"source folder {src} is empty; give the folder that holds the "
                         "class folders")
    out = check_output(Path(out), overwrite)
    if out.resolve() == src.resolve():
        raise UsageError(f"--out {out} is the source folder; choose another output folder")
    names, plan = _plan(src, seed)
    if not allow_pickle:
        _refuse_pickles(f for s in SPLITS for f, _ in plan[s])
    shape = read_image(next(f for s in SPLITS for f, _ in plan[s][:1]), allow_pickle)[0].shape
    meta = {"preset": None, "seed": int(seed), "source": f"ingest:{src.resolve()}",
            "class_names": names, "image_shape": list(shape), "pixel_scale": pixel_scale}
    fields = [pa.field("source_file", pa.string()), pa.field("axion_mass", pa.float64())]
    from tqdm import tqdm

    total = sum(len(v) for v in plan.values())
    with atomic_dir(out, overwrite=overwrite) as tmp, \
            tqdm(total=total, unit="img", desc="ingest", disable=not progress, delay=1.0) as bar:
        writer = DatasetWriter(tmp, meta, fields)
        for split in SPLITS:
            for start in range(0, len(plan[split]), BATCH):
                rows = plan[split][start:start + BATCH]
                imgs, masses = zip(*(read_image(f, allow_pickle) for f, _ in rows))
                for (f, _), im in zip(rows, imgs):
                    if im.shape != shape:
                        raise UsageError(f"{f} has shape {im.shape} but other images have "
                                         f"{shape}; all images must share one shape")
                params = {"source_file": [str(f.relative_to(src)) for f, _ in rows],
                          "axion_mass": np.array(masses, np.float64)}
                writer.write(split, np.stack(imgs), np.array([lab for _, lab in rows]), params)
                bar.update(len(rows))
        writer.close()
    return out
