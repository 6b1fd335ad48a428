"""Ingestion of the DeepLense layouts and every bad-input case (exit 2, one line, no output)."""
import numpy as np
import pytest

from common.errors import UsageError
from data_io import ingest_folder, open_dataset
from tests.data_fixtures import write_binary_jpg, write_model_fj, write_model_i

from tests.support.tiny_studies import run_cli


def test_model_i_layout_with_pickle_allowed(tmp_path):
    src = write_model_i(tmp_path / "src", n=10)
    ds = open_dataset(ingest_folder(src, tmp_path / "out", allow_pickle=True, progress=False))
    assert ds.class_names == ["no_sub", "cdm", "vortex"] and ds.image_shape == (20, 20)
    counts = {s: sum(ds.metadata["counts"][s].values()) for s in ds.splits}
    assert counts == {"train": 24, "val": 3, "test": 3}
    x, y = ds.arrays("train")
    p = ds.params("train")
    assert np.isfinite(p["axion_mass"][y == 2]).all() and p["axion_mass"][y != 2].isna().all()
    f = p["source_file"].iloc[0]
    assert np.array_equal(np.asarray(np.load(src / f, allow_pickle=True).tolist()[0]
                                     if f.startswith("axion") else np.load(src / f)), x[0])


def test_model_fj_layout_keeps_val_as_test(tmp_path):
    src = write_model_fj(tmp_path / "src", n=3)
    ds = open_dataset(ingest_folder(src, tmp_path / "out", progress=False))
    assert ds.class_names == ["no_sub", "cdm", "vortex"]
    assert all(f.startswith("val/") for f in ds.params("test")["source_file"])
    assert sum(ds.metadata["counts"]["test"].values()) == 9
    assert sum(ds.metadata["counts"]["train"].values()) + sum(ds.metadata["counts"]["val"].values()) == 27
    assert ds.arrays("val")[0].max() <= 1.0


def test_binary_jpg_layout(tmp_path):
    ds = open_dataset(ingest_folder(write_binary_jpg(tmp_path / "src", n=10), tmp_path / "out",
                                    progress=False))
    assert ds.class_names == ["no_sub", "sub"] and ds.image_shape == (24, 24)


def _case(tmp_path, name):
    """Build a broken source folder; return (src, expected message fragment)."""
    src = tmp_path / name
    if name == "missing":
        return src, "does not exist"
    src.mkdir()
    if name == "empty":
        return src, "is empty"
    write_model_i(src, n=2)
    if name == "empty_class":
        for f in (src / "cdm").iterdir():
            f.unlink()
        return src, "cdm has no files"
    if name == "unknown_class":
        (src / "mystery").mkdir()
        np.save(src / "mystery" / "a.npy", np.zeros((20, 20)))
        return src, "unknown class folder"
    if name == "mixed_shapes":
        np.save(src / "cdm" / "0000.npy", np.zeros((21, 20)))
        return src, "shape"
    if name == "nan":
        np.save(src / "cdm" / "0000.npy", np.full((20, 20), np.nan))
        return src, "NaN"
    if name == "truncated_npy":
        data = (src / "cdm" / "0001.npy").read_bytes()
        (src / "cdm" / "0001.npy").write_bytes(data[: len(data) // 2])
        return src, "0001.npy"
    if name == "truncated_jpg":
        write_binary_jpg(src / "jpg", n=2)
        return None, None
    if name == "pickle":
        return src, "--allow-pickle"
    raise AssertionError(name)


CASES = ["missing", "empty", "empty_class", "unknown_class", "mixed_shapes", "nan",
         "truncated_npy", "pickle"]


@pytest.mark.parametrize("name", CASES)
def test_bad_sources_raise_and_leave_nothing(tmp_path, name):
    src, fragment = _case(tmp_path, name)
    out = tmp_path / "out"
    with pytest.raises(UsageError, match=fragment):
        ingest_folder(src, out, allow_pickle=name != "pickle", progress=False)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_truncated_jpg(tmp_path):
    src = write_binary_jpg(tmp_path / "src", n=3)
    bad = src / "sub" / "1.jpg"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(UsageError, match="1.jpg"):
        ingest_folder(src, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_cli_exit_2_one_line_for_bad_input(tmp_path, run_main):
    src = write_model_i(tmp_path / "src", n=2)
    code, _, err = run_main("ingest", src, "--out", tmp_path / "out")  # axion files are pickled
    assert code == 2 and err.count("\n") == 1 and "--allow-pickle" in err
    assert "axion" in err and not (tmp_path / "out").exists()
    code, _, err = run_main("ingest", src, "--out", tmp_path / "out", "--allow-pickle", "--quiet")
    assert code == 0, err
    for args, fragment in [
        (("ingest", src, "--out", tmp_path / "out", "--allow-pickle"), "already holds a dataset"),
        (("simulate", "--preset", "model_x", "--per-class", 2, "--out", tmp_path / "s"), "invalid choice"),
        (("simulate", "--per-class", -1, "--out", tmp_path / "s"), "must be >= 1"),
        (("simulate", "--per-class", "many", "--out", tmp_path / "s"), "not a whole number"),
        (("inspect", tmp_path / "nowhere"), "does not exist"),
    ]:
        code, _, err = run_main(*args)
        assert code == 2 and err.count("\n") == 1 and fragment in err and "Traceback" not in err, err
    assert not (tmp_path / "s").exists()
    code, _, err = run_main("ingest", src, "--out", tmp_path / "out", "--allow-pickle", "--overwrite", "--quiet")
    assert code == 0, err


def test_inspect_as_a_real_process(tmp_path):
    """The console script's canary for `inspect` (and, through its bad input, `simulate`)."""
    from data_io.ingest import ingest_folder

    ingest_folder(write_model_i(tmp_path / "src", n=2), tmp_path / "out", progress=False, allow_pickle=True)
    r = run_cli("inspect", tmp_path / "out", cwd=tmp_path)
    assert r.returncode == 0 and "no_sub" in r.stdout and (tmp_path / "out" / "examples.png").is_file()
    r = run_cli("simulate", "--per-class", "many", "--out", tmp_path / "s", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a whole number" in r.stderr


def test_simulate_refuses_existing_and_nonempty_outputs(tmp_path):
    from data_io import simulate_dataset

    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty"):
        simulate_dataset("small64", 1, tmp_path / "busy", progress=False)
    with pytest.raises(UsageError, match="split fractions"):
        simulate_dataset("small64", 1, tmp_path / "x", progress=False, split_fractions=(0.5, 0.1, 0.1))
    with pytest.raises(UsageError, match="per-class"):
        simulate_dataset("small64", 0, tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists()
