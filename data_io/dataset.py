"""Lens datasets on disk: one Parquet file per split plus ``dataset.json``.

Layout::

    DIR/train.parquet  DIR/val.parquet  DIR/test.parquet  DIR/dataset.json

Each Parquet file (zstd) has columns ``image`` (pyarrow's canonical ``fixed_shape_tensor``
extension type, float32 [H, W]), ``label`` (int64, index into ``class_names``) and the
physical-parameter columns. The schema metadata key ``lens_dataset`` holds the dataset
metadata as JSON (format_version, preset, seed, source, class_names, image_shape);
``dataset.json`` holds the same plus per-split class counts.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from common.errors import UsageError

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
META_KEY = b"lens_dataset"
ROW_GROUP_IMAGES = 512


def is_dataset_dir(path: Path) -> bool:
    return (Path(path) / "dataset.json").is_file()


def check_output(out: Path, overwrite: bool) -> Path:
    """Refuse an output path that already holds data, before any work starts."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"output path {out} is a file; choose a new folder for the dataset")
    if is_dataset_dir(out) and not overwrite:
        raise UsageError(f"output folder {out} already holds a dataset; pass --overwrite "
                         "to replace it or choose another --out")
    if out.is_dir() and any(out.iterdir()) and not is_dataset_dir(out):
        raise UsageError(f"output folder {out} is not empty and is not a dataset; "
                         "choose a new or empty folder")
    return out


def stratified_split(labels: np.ndarray, fractions, seed: int) -> np.ndarray:
    """Split index (0 train, 1 val, 2 test) per item: each class is shuffled with a seeded
    generator and cut by ``fractions`` (val and test rounded, train takes the rest)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 2**32 - 1]))
    out = np.zeros(len(labels), dtype=np.int8)
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val, n_test = (int(round(len(idx) * f)) for f in fractions[1:])
        n_test = min(n_test, len(idx) - 1)
        n_val = min(n_val, len(idx) - 1 - n_test)
        out[idx[len(idx) - n_test - n_val:len(idx) - n_test]] = 1
        out[idx[len(idx) - n_test:]] = 2
    return out


def check_fractions(fractions) -> tuple[float, float, float]:
    f = tuple(float(v) for v in fractions)
    if len(f) != 3 or min(f) < 0 or f[0] <= 0 or abs(sum(f) - 1.0) > 1e-6:
        raise UsageError(f"split fractions {fractions} must be three numbers >= 0 "
                         "(train > 0) that sum to 1, e.g. 0.8 0.1 0.1")
    return f


class DatasetWriter:
    """Streams rows into ``DIR/<split>.parquet`` files; ``close()`` writes ``dataset.json``."""

    def __init__(self, folder: Path, metadata: dict, param_fields: list[pa.Field]):
        self.folder, self.meta = Path(folder), dict(metadata, format_version=FORMAT_VERSION)
        h, w = self.meta["image_shape"]
        self.image_type = pa.fixed_shape_tensor(pa.float32(), (h, w))
        fields = [pa.field("image", self.image_type), pa.field("label", pa.int64()), *param_fields]
        self.schema = pa.schema(fields, metadata={META_KEY: json.dumps(self.meta).encode()})
        n_cls = len(self.meta["class_names"])
        self.counts = {s: np.zeros(n_cls, dtype=np.int64) for s in SPLITS}
        self.buffers: dict[str, list[pa.RecordBatch]] = {s: [] for s in SPLITS}
        self.writers = {s: pq.ParquetWriter(self.folder / f"{s}.parquet", self.schema,
                                            compression="zstd") for s in SPLITS}

    def write(self, split: str, images: np.ndarray, labels: np.ndarray, params: dict) -> None:
        if len(labels) == 0:
            return
        images = np.ascontiguousarray(images, dtype=np.float32)
        cols = [pa.FixedShapeTensorArray.from_numpy_ndarray(images),
                pa.array(np.asarray(labels, np.int64))]
        cols += [pa.array(params[f.name], type=f.type) for f in list(self.schema)[2:]]
        self.buffers[split].append(pa.RecordBatch.from_arrays(cols, schema=self.schema))
        self.counts[split] += np.bincount(labels, minlength=len(self.counts[split]))
        if sum(b.num_rows for b in self.buffers[split]) >= ROW_GROUP_IMAGES:
            self._flush(split)

    def _flush(self, split: str) -> None:
        if self.buffers[split]:
            table = pa.Table.from_batches(self.buffers[split], schema=self.schema)
            self.writers[split].write_table(table, row_group_size=len(table))
            self.buffers[split] = []

    def close(self) -> dict:
        for s in SPLITS:
            self._flush(s)
            self.writers[s].close()
        names = self.meta["class_names"]
        self.meta["counts"] = {s: dict(zip(names, map(int, c))) for s, c in self.counts.items()}
        (self.folder / "dataset.json").write_text(json.dumps(self.meta, indent=2) + "\n")
        return self.meta


def _single_chunk(column: pa.ChunkedArray) -> pa.Array:
    """The column as one array: its only chunk as is (``combine_chunks`` would copy it)."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


class LensDataset:
    """A dataset folder opened for reading (see the module docstring for the layout)."""

    splits = list(SPLITS)

    def __init__(self, path: Path, metadata: dict):
        self.path, self.metadata = Path(path), metadata
        self.class_names = list(metadata["class_names"])
        self.image_shape = tuple(int(v) for v in metadata["image_shape"])
        self._tables: dict[str, pa.Table] = {}
        self._checked: set[str] = set()

    def table(self, split: str) -> pa.Table:
        """The whole split, read with memory mapping (cached)."""
        if split not in SPLITS:
            raise UsageError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        if split not in self._tables:
            path = self.path / f"{split}.parquet"
            try:
                self._tables[split] = pq.read_table(path, memory_map=True)
            except (OSError, pa.ArrowException) as err:
                raise UsageError(f"dataset file {path} is unreadable ({err}); "
                                 "recreate the dataset") from None
        return self._tables[split]

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """``(images float32 [N, H, W], labels int64 [N])``.

        Zero-copy views of the Arrow buffers when the split is one row group (one chunk);
        otherwise the chunks are concatenated once. Parquet pages are zstd-compressed, so the
        buffers are the decompressed pages, not the file bytes. The arrays are read-only.
        """
        t = self.table(split)
        if t.num_rows == 0:
            return (np.zeros((0, *self.image_shape), np.float32), np.zeros(0, np.int64))
        images = _single_chunk(t.column("image")).to_numpy_ndarray()
        labels = _single_chunk(t.column("label")).to_numpy(zero_copy_only=True)
        images = images.reshape(-1, *self.image_shape)
        if split not in self._checked:
            _check_values(self.path / f"{split}.parquet", images, labels, len(self.class_names))
            self._checked.add(split)
        return images, labels

    def params(self, split: str):
        """The physical-parameter columns of a split as a pandas DataFrame."""
        t = self.table(split)
        return t.drop_columns(["image", "label"]).to_pandas()

    def __repr__(self) -> str:
        counts = {s: sum(self.metadata.get("counts", {}).get(s, {}).values()) for s in SPLITS}
        return f"LensDataset({str(self.path)!r}, classes={self.class_names}, counts={counts})"


def _check_values(path: Path, images: np.ndarray, labels: np.ndarray, n_classes: int) -> None:
    """Labels in ``[0, n_classes)`` and finite pixels (checked in chunks of 1024 images)."""
    bad = np.flatnonzero((labels < 0) | (labels >= n_classes))
    if len(bad):
        raise UsageError(f"dataset file {path}: row {bad[0]} has label {labels[bad[0]]} but the "
                         f"dataset has {n_classes} classes (labels 0..{n_classes - 1}); recreate the dataset")
    for lo in range(0, len(images), 1024):
        finite = np.isfinite(images[lo:lo + 1024]).reshape(min(1024, len(images) - lo), -1).all(axis=1)
        if not finite.all():
            raise UsageError(f"dataset file {path}: image {lo + np.flatnonzero(~finite)[0]} has NaN or "
                             "infinite pixels; recreate the dataset without it")


def _check_schema(path: Path, schema: pa.Schema, shape: list[int]) -> None:
    """The columns the reader relies on: a float tensor ``image`` of ``shape`` and integer ``label``."""
    if "image" not in schema.names or "label" not in schema.names:
        problem = f"has no image and label columns (it has {', '.join(schema.names[:6])})"
    elif not isinstance(image := schema.field("image").type, pa.FixedShapeTensorType) \
            or not pa.types.is_floating(image.value_type):
        problem = f"has an image column of type {image}, not a float tensor"
    elif list(image.shape) != list(shape):
        problem = f"holds {list(image.shape)} images but dataset.json says image_shape {list(shape)}"
    elif not pa.types.is_integer(schema.field("label").type):
        problem = f"has a label column of type {schema.field('label').type}, not integers"
    else:
        return
    raise UsageError(f"dataset file {path} {problem}; recreate the dataset")


def _check_unique_sources(folder: Path) -> None:
    """An ingested image (``source_file``) may sit in one split only, once (no train/test leak)."""
    seen: dict[str, str] = {}
    for s in SPLITS:
        for name in pq.read_table(folder / f"{s}.parquet", columns=["source_file"]).column(0).to_pylist():
            if name in seen:
                raise UsageError(f"dataset {folder}: source_file {name!r} appears twice ({seen[name]} and "
                                 f"{s}); recreate the dataset with `run_study.py ingest`")
            seen[name] = s


def open_dataset(path) -> LensDataset:
    """Open a dataset folder; ``UsageError`` if it is missing, not a dataset, or corrupt."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"dataset folder {path} does not exist; create it with "
                         "`run_study.py simulate` or `run_study.py ingest`")
    meta_file = path / "dataset.json"
    if not meta_file.is_file():
        raise UsageError(f"{path} is not a dataset (no dataset.json); create one with "
                         "`run_study.py simulate` or `run_study.py ingest`")
    try:
        meta = json.loads(meta_file.read_text())
        ok = meta.get("format_version") == FORMAT_VERSION and meta["class_names"]
        shape = [int(v) for v in meta["image_shape"]]
    except (ValueError, KeyError, TypeError, AttributeError):
        ok = False
    if not ok or len(shape) != 2:
        raise UsageError(f"{meta_file} is corrupt or from another format version "
                         f"(expected {FORMAT_VERSION}); recreate the dataset")
    schemas = []
    for s in SPLITS:
        f = path / f"{s}.parquet"
        try:
            schemas.append(pq.read_schema(f))
        except (OSError, pa.ArrowException):
            raise UsageError(f"dataset file {f} is missing or corrupt; recreate the dataset") from None
        _check_schema(f, schemas[-1], shape)
    if all("source_file" in schema.names for schema in schemas):
        _check_unique_sources(path)
    return LensDataset(path, meta)
