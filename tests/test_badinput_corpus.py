"""A corpus of malformed inputs: each exits 2 with one line naming the input and the fix.

Every case runs ``run_study.main(argv)`` in this process (the same code path as the console
script, without paying an interpreter start per case; a few run as real subprocesses at the
end). For each case: exit status 2, exactly one stderr line ``error: ...`` that contains the
named input and a hint at the fix, no traceback, and nothing half-written: no ``.tmp-`` or
``.old-`` files, no dataset folder, no Tune or study-state folder, and no MLflow experiment or
run for the rejected study.
"""
from __future__ import annotations

import os
import shutil
import socket
import sqlite3
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.support.tiny_studies import run_cli, tiny_overrides
from tests.support.sessions import SESSION_RAY
from tests.data_fixtures import write_model_fj, write_model_i

NAME = "bad"


class Payload:
    """Unpickling this creates the folder ``marker`` (proof that code from the file ran)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def _sets(items):
    return [a for item in items for a in ("--set", item)]


def _tune(dataset: Path, tmp: Path, *extra: str) -> list[str]:
    return ["tune", "--name", NAME, *_sets(tiny_overrides(dataset, tmp, trials=1, epochs=1, name=NAME)), *extra]


# ----------------------------------------------------------------------------- broken datasets


def _copy(dataset: Path, tmp: Path) -> Path:
    return Path(shutil.copytree(dataset, tmp / "broken"))


def _rewrite(folder: Path, split: str, change) -> None:
    path = folder / f"{split}.parquet"
    pq.write_table(change(pq.read_table(path)), path)


def _images(table: pa.Table) -> np.ndarray:
    return table.column("image").combine_chunks().to_numpy_ndarray().copy()


def _with_images(table: pa.Table, images: np.ndarray) -> pa.Table:
    column = pa.FixedShapeTensorArray.from_numpy_ndarray(np.ascontiguousarray(images, np.float32))
    fields = [pa.field("image", column.type) if f.name == "image" else f for f in table.schema]
    arrays = [column if n == "image" else table.column(n) for n in table.column_names]
    return pa.table(arrays, schema=pa.schema(fields, metadata=table.schema.metadata))


def _pixel(value):
    def change(table):
        images = _images(table)
        images[0, 10, 10] = value
        return _with_images(table, images)
    return change


def _labels(values):
    def change(table):
        labels = table.column("label").to_numpy().copy()
        labels[: len(values)] = values
        return table.set_column(table.column_names.index("label"), "label", pa.array(labels))
    return change


def dataset_case(split: str, change, *needles, named: str = "{split}.parquet"):
    def build(ctx):
        folder = _copy(ctx["dataset"], ctx["tmp"])
        if callable(change):
            _rewrite(folder, split, change)
        else:
            change_file(folder, split, change)
        return _tune(folder, ctx["tmp"]), [named.format(split=split), *needles]
    return build


def change_file(folder: Path, name: str, how: str) -> None:
    if how == "truncate":
        path = folder / f"{name}.parquet"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "image_shape":
        meta = (folder / "dataset.json").read_text().replace('"image_shape": [\n    64,\n    64\n  ]',
                                                             '"image_shape": [\n    48,\n    48\n  ]')
        assert "48" in meta
        (folder / "dataset.json").write_text(meta)


def duplicate_ids(ctx):
    """An ingested set whose test split repeats a train image (same source file): a leak."""
    folder = ctx["ingested"](ctx["tmp"])
    first = pq.read_table(folder / "train.parquet").column("source_file")[0].as_py()

    def change(table):
        names = table.column("source_file").to_pylist()
        names[0] = first
        return table.set_column(table.column_names.index("source_file"), "source_file", pa.array(names))
    _rewrite(folder, "test", change)
    return _tune(folder, ctx["tmp"]), [first, "source_file"]


# ----------------------------------------------------------------------------- source folders


def pickled_npy(ctx):
    src = write_model_i(ctx["tmp"] / "src", n=2)
    return ["ingest", str(src), "--out", str(ctx["tmp"] / "out"), "--quiet"], ["axion", "--allow-pickle"]


def malicious_npy(ctx):
    src = write_model_fj(ctx["tmp"] / "src", n=2)
    evil = np.empty(1, dtype=object)
    evil[0] = Payload(ctx["marker"])
    np.save(src / "train" / "no" / "img_0.npy", evil, allow_pickle=True)
    return ["ingest", str(src), "--out", str(ctx["tmp"] / "out"), "--quiet"], ["img_0.npy", "--allow-pickle"]


def malicious_checkpoint(ctx):
    import torch

    path = ctx["tmp"] / "model_weights.pt"
    torch.save({"format": Payload(ctx["marker"])}, path)
    return ["evaluate", "--model", str(path), "--data", str(ctx["dataset"]), "--out", str(ctx["tmp"] / "out")], \
        ["model_weights.pt", "model_weights.pt written by `best`"]


def nan_npy(ctx):
    src = write_model_fj(ctx["tmp"] / "src", n=2)
    np.save(src / "train" / "sphere" / "img_1.npy", np.full((1, 20, 20), np.inf))
    return ["ingest", str(src), "--out", str(ctx["tmp"] / "out"), "--quiet"], ["img_1.npy", "remove the file"]


# ----------------------------------------------------------------------------- configs and usage


def config_file(text: str, *needles):
    def build(ctx):
        path = ctx["tmp"] / "study.yaml"
        path.write_text(text)
        return ["tune", "--config", str(path), "--name", NAME], ["study.yaml", *needles]
    return build


def override(item: str, *needles):
    def build(ctx):
        return _tune(ctx["dataset"], ctx["tmp"], "--set", item), list(needles)
    return build


def argv(*args: str, needles=()):
    def build(ctx):
        return [a.format(tmp=ctx["tmp"], data=ctx["dataset"]) for a in args], list(needles)
    return build


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unreachable_tracking(ctx):
    uri = f"http://127.0.0.1:{closed_port()}"
    return _tune(ctx["dataset"], ctx["tmp"], "--tracking-uri", uri), [uri, "start it"]


def existing_study(ctx):
    (ctx["tmp"] / "runs" / f"{NAME}.state").mkdir(parents=True)
    args, _ = override("tune.trials=1")(ctx)
    return args, [f"{NAME!r} already exists", "--resume"]


CASES = {
    # datasets
    "truncated_parquet": dataset_case("val", "truncate", "recreate"),
    "schema_without_label": dataset_case("train", lambda t: t.drop_columns(["label"]), "label", "recreate"),
    "label_as_text": dataset_case("train", lambda t: t.set_column(
        1, "label", pa.array([str(v) for v in t.column("label").to_pylist()])), "label", "recreate"),
    "image_shape_vs_metadata": dataset_case("train", "image_shape", "shape", "recreate"),
    "image_shape_in_split": dataset_case("val", lambda t: _with_images(t, _images(t)[:, :32, :32]),
                                         "shape", "recreate"),
    "nan_pixels": dataset_case("train", _pixel(np.nan), "NaN", "recreate"),
    "inf_pixels": dataset_case("val", _pixel(np.inf), "infinite", "recreate"),
    "empty_split": dataset_case("val", lambda t: t.slice(0, 0), "empty", "re-make", named="'{split}'"),
    "label_out_of_range": dataset_case("train", _labels([7]), "label", "recreate"),
    "negative_label": dataset_case("test", _labels([-1]), "label", "recreate"),
    "duplicate_ids": duplicate_ids,
    "missing_dataset": override("data.path=nowhere", "nowhere", "simulate"),
    "pickled_npy_without_opt_in": pickled_npy,
    "npy_whose_pickle_runs_code": malicious_npy,
    "checkpoint_whose_pickle_runs_code": malicious_checkpoint,
    "inf_pixels_in_source": nan_npy,
    # configs
    "unknown_key": override("tune.colour=red", "tune.colour", "known keys"),
    "wrong_type": override("tune.trials=many", "tune.trials", "int"),
    "wrong_list_type": override("search.widths=0.5", "search.widths", "list"),
    "inverted_range": override("search.lr=[1.0e-2, 1.0e-3]", "search.lr", "low < high"),
    "nan_range": override("search.weight_decay=[.nan, 1.0e-3]", "search.weight_decay", "positive"),
    "grace_beyond_epochs": override("tune.grace_period=5", "tune.grace_period", "lower"),
    "unknown_group": override("search.groups=[C5]", "C5", "choose from"),
    "impossible_cpus": override("tune.cpus_per_trial=64", "tune.cpus_per_trial", "lower it"),
    "impossible_gpus": override("tune.gpus_per_trial=1", "tune.gpus_per_trial", "lower it"),
    "unknown_memory_mode": override("train.memory=tiny", "train.memory", "lean"),
    "negative_memory_budget": override("train.memory_budget_gb=-1", "train.memory_budget_gb", "positive"),
    "yaml_syntax": config_file("tune: [unclosed\n", "fix its syntax"),
    "yaml_not_mapping": config_file("- a\n- b\n", "mapping"),
    "yaml_duplicate_key": config_file("tune:\n  trials: 2\ntune:\n  trials: 3\n", "tune", "once"),
    "config_missing": argv("tune", "--config", "{tmp}/none.yaml", needles=["none.yaml", "existing"]),
    # command-line usage
    "unknown_option": argv("tune", "--bogus", needles=["--bogus", "--help"]),
    "set_without_value": argv("tune", "--set", "tune.trials", needles=["tune.trials", "key=value"]),
    "resume_unknown_study": override("tune.trials=1", NAME, "without --resume"),
    "existing_study_name": existing_study,
    "unreachable_tracking": unreachable_tracking,
    "simulate_zero_images": argv("simulate", "--per-class", "0", "--out", "{tmp}/out",
                                 needles=["0", ">= 1"]),
    "inspect_missing": argv("inspect", "{tmp}/nowhere", needles=["nowhere", "simulate"]),
    "models_memory_zero_batch": argv("models", "--memory", "--batch", "0", needles=["--batch", "positive"]),
    "evaluate_missing_model": argv("evaluate", "--model", "{tmp}/none.pt", "--data", "{data}",
                                   needles=["none.pt", "models:/"]),
}
RESUME = {"resume_unknown_study": ["--resume"]}
NEEDS_RAY = {"impossible_cpus", "impossible_gpus"}


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """An ingested Model F/J-layout dataset (it has a ``source_file`` column)."""
    from data_io.ingest import ingest_folder

    base = tmp_path_factory.mktemp("ingested")
    made = ingest_folder(write_model_fj(base / "src", n=3), base / "set", progress=False)

    def copy(tmp: Path) -> Path:
        return Path(shutil.copytree(made, tmp / "broken"))
    return copy


@pytest.fixture(autouse=True)
def no_ray_left_behind(request):
    """A case that wrongly got as far as starting Ray must not leave it to the next case."""
    import ray

    yield
    if ray.is_initialized() and not SESSION_RAY.owns_connection():
        ray.shutdown()


def _run_main(args: list[str], capfd) -> tuple[int, str]:
    from run_study import main

    capfd.readouterr()
    try:
        code = main(args)
    except SystemExit as stop:
        code = stop.code
    return code, capfd.readouterr().err


def _leftovers(tmp: Path, before=frozenset()) -> list[str]:
    """Half-written or rejected-study files under ``tmp`` (paths relative to it), new since ``before``."""
    bad = []
    for path in set(tmp.rglob("*")) - set(before):
        rel = str(path.relative_to(tmp))
        if ".tmp-" in path.name or ".old-" in path.name or path.name.startswith(("tmp", ".tmp")):
            bad.append(rel)
        if rel in ("out", f"runs/{NAME}", f"runs/{NAME}.state"):
            bad.append(rel)
    db = tmp / "mlflow.db"
    if db.exists():
        with sqlite3.connect(db) as con:
            names = [r[0] for r in con.execute("select name from experiments")]
            runs = con.execute("select count(*) from runs").fetchone()[0]
        if NAME in names or runs:
            bad.append(f"mlflow.db: experiments {names}, {runs} runs")
    return bad


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(case, tiny_dataset, ingested, tmp_path, capfd,
                                                          request, monkeypatch):
    if case in NEEDS_RAY:   # the session's 2-CPU Ray (run_study reuses an initialised Ray)
        request.getfixturevalue("shared_ray")
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    ctx = {"dataset": tiny_dataset, "tmp": work, "ingested": ingested, "marker": tmp_path / "pwned"}
    args, needles = CASES[case](ctx)
    before = set(work.rglob("*"))
    code, err = _run_main(args + RESUME.get(case, []), capfd)

    assert code == 2, f"exit {code}: {err[-2000:]}"
    assert err.count("\n") == 1 and err.startswith("error: "), err[-2000:]
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    assert not ctx["marker"].exists(), "code from the file ran"
    new = {p for p in work.rglob("*") if p not in before and p.name != "mlflow.db"}
    assert not _leftovers(work, before), _leftovers(work, before)
    assert not new, f"files written for a rejected input: {sorted(map(str, new))}"


def test_the_malicious_payloads_are_real(tmp_path):
    """The payload used above does run when unpickled, so the cases above test something."""
    import pickle

    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.is_dir()


@pytest.mark.parametrize("case", ["npy_whose_pickle_runs_code", "nan_pixels"])
def test_as_a_real_process(case, tiny_dataset, ingested, tmp_path):
    """The same contract seen from a shell: status 2, one stderr line, nothing else."""
    work = tmp_path / "work"
    work.mkdir()
    ctx = {"dataset": tiny_dataset, "tmp": work, "ingested": ingested, "marker": tmp_path / "pwned"}
    args, needles = CASES[case](ctx)
    before = set(work.rglob("*"))
    done = run_cli(*args, cwd=work)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr[-2000:]
    assert all(n in done.stderr for n in needles) and not ctx["marker"].exists()
    assert not _leftovers(work, before)
