"""Simulated datasets: Parquet round trip, metadata, splits, determinism, workers."""
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from common.errors import UsageError
from data_io import PRESETS, open_dataset, simulate_dataset


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "ds"
    return simulate_dataset("small64", 20, out, seed=7, progress=False)


def test_round_trip_arrays_labels_params(small):
    ds = open_dataset(small)
    assert ds.class_names == ["no_sub", "cdm", "vortex"] and ds.image_shape == (64, 64)
    assert ds.splits == ["train", "val", "test"]
    total = 0
    for s in ds.splits:
        x, y = ds.arrays(s)
        assert x.dtype == np.float32 and x.shape[1:] == (64, 64) and y.dtype == np.int64
        assert np.bincount(y, minlength=3).tolist() == [ds.metadata["counts"][s][c] for c in ds.class_names]
        assert np.all(x >= 0) and np.all(x == np.round(x))  # integer counts
        params = ds.params(s)
        assert len(params) == len(y)
        assert (params["n_subhalos"].to_numpy()[y == 1] == 25).all()
        assert (params["n_subhalos"].to_numpy()[y != 1] == 0).all()
        assert np.isfinite(params["axion_mass"].to_numpy()[y == 2]).all()
        assert np.isnan(params["axion_mass"].to_numpy()[y != 2]).all()
        total += len(y)
    assert total == 60
    assert [sum(ds.metadata["counts"][s].values()) for s in ds.splits] == [48, 6, 6]


def test_schema_metadata_and_tensor_column(small):
    schema = pq.read_schema(small / "train.parquet")
    meta = json.loads(schema.metadata[b"lens_dataset"])
    assert meta["preset"] == "small64" and meta["seed"] == 7 and meta["format_version"] == 1
    assert meta["class_names"] == ["no_sub", "cdm", "vortex"] and meta["source"] == "simulate:small64"
    assert "fixed_shape_tensor" in str(schema.field("image").type)
    assert pq.ParquetFile(small / "train.parquet").metadata.row_group(0).column(0).compression == "ZSTD"


def test_arrays_are_zero_copy_views_of_arrow_buffers(small):
    ds = open_dataset(small)
    x, _ = ds.arrays("val")
    buf = ds.table("val").column("image").chunk(0).storage.values.buffers()[1]
    assert x.ctypes.data == buf.address and not x.flags.writeable


def test_same_seed_same_bytes_any_worker_count(small, tmp_path):
    again = simulate_dataset("small64", 20, tmp_path / "w2", seed=7, progress=False, workers=2)
    for s in ("train", "val", "test"):
        assert (small / f"{s}.parquet").read_bytes() == (again / f"{s}.parquet").read_bytes()
    other = simulate_dataset("small64", 20, tmp_path / "s8", seed=8, progress=False)
    assert not np.array_equal(open_dataset(other).arrays("train")[0], open_dataset(small).arrays("train")[0])


def test_binary_and_model_j_presets(tmp_path):
    ds = open_dataset(simulate_dataset("binary", 2, tmp_path / "b", progress=False))
    assert ds.class_names == ["no_sub", "sub"] and ds.image_shape == (150, 150)
    ds = open_dataset(simulate_dataset("model_j", 3, tmp_path / "j", seed=1, progress=False))
    p = ds.params("train")
    assert p["z_lens"].between(0.4, 0.6).all() and p["z_source"].between(0.8, 1.2).all()
    assert p["snr_peak"].between(10, 30).all() and p["z_lens"].nunique() > 1
    assert set(PRESETS) >= {"model_i", "model_j", "small64", "binary"}


def test_stratified_split_keeps_class_balance(tmp_path):
    from data_io.dataset import stratified_split

    labels = np.arange(300) % 3
    split = stratified_split(labels, (0.8, 0.1, 0.1), 0)
    for k, n in enumerate((80, 10, 10)):
        assert np.bincount(labels[split == k]).tolist() == [n, n, n]
    assert np.array_equal(split, stratified_split(labels, (0.8, 0.1, 0.1), 0))


def test_open_dataset_errors(tmp_path, small):
    with pytest.raises(UsageError, match="does not exist"):
        open_dataset(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(UsageError, match="not a dataset"):
        open_dataset(tmp_path / "plain")
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(small, bad)
    (bad / "val.parquet").write_bytes(b"PAR1 truncated")
    with pytest.raises(UsageError, match="val.parquet"):
        open_dataset(bad)
    (bad / "dataset.json").write_text("{not json")
    with pytest.raises(UsageError, match="corrupt"):
        open_dataset(bad)
