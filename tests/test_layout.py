"""The house rules a newcomer relies on: study/ in rooms that import one way, modules that fit an
afternoon's reading in every package, one list of model names, one place that registers every
subcommand, nothing in the installed packages that only tests or benchmarks use, no environment
changed at import, and a README and docs whose paths exist, with a layout page (docs/layout.md)
that names every module of study/."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.support.tiny_studies import ROOT

#: study's rooms, each allowed to import only the ones before it
ROOMS = ("config", "engine", "tracking", "search", "final", "verdict", "cli")
MAX_LINES = 300


PACKAGES = ("common", "data_io", "lensnets", "study")   # what `pip install` ships (pyproject.toml)


def _study_modules() -> list[Path]:
    return sorted((ROOT / "study").rglob("*.py"))


def _package_modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def _module_name(path: Path) -> str:
    name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def _imported(path: Path) -> set[str]:
    """Module names ``path`` imports (``from a.b import c`` counts as ``a.b`` and ``a.b.c``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level:   # from . import x / from .m import x
            base = _module_name(path).split(".")
            base = base[: len(base) - node.level + (1 if path.name == "__init__.py" else 0)]
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)
    return names


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "study" and len(parts) > 1 else None


def test_rooms_import_one_way():
    backward = []
    for path in _study_modules():
        here = _room(".".join(path.relative_to(ROOT).with_suffix("").parts))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("study."):
                there = _room(node.module)
                if there != here and ROOMS.index(there) > ROOMS.index(here):
                    backward.append(f"{path.relative_to(ROOT)} imports {node.module}")
    assert not backward, "imports against the room order " + " < ".join(ROOMS) + ": " + "; ".join(backward)


def test_every_room_says_what_lives_there_and_no_module_is_long():
    for room in ROOMS[1:-1]:
        doc = ast.get_docstring(ast.parse((ROOT / "study" / room / "__init__.py").read_text()))
        assert doc and len(doc) > 100, f"study/{room}/__init__.py needs a docstring saying what lives there"
    long = {str(p.relative_to(ROOT)): n for p in _package_modules()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_best_and_evaluate_do_not_import_ray_tune():
    import subprocess
    import sys

    code = ("import sys; import study.final.best_cli, study.final.evaluate, study.final.best_job; "
            "print(sorted(m for m in sys.modules if m.startswith(('ray.tune', 'optuna'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_study_accepts_exactly_the_model_names_lensnets_owns():
    from common.errors import UsageError
    from lensnets.config import MODEL_NAMES
    from study.config import load_config

    config = load_config(None, [f"search.groups=[{', '.join(MODEL_NAMES)}]"])
    assert tuple(config.search.groups) == MODEL_NAMES
    with pytest.raises(UsageError, match="choose from " + ", ".join(MODEL_NAMES)):
        load_config(None, ["search.groups=[C5]"])


def test_every_path_the_readme_and_docs_name_exists():
    """README.md and docs/*.md (tests/test_docs.py also checks the paths commands write there, the
    command lines and the links; its docstring gives the rules for what counts as a path)."""
    from tests.test_docs import ARTIFACTS, PAGES, REPO_DIRS, _exists, _paths

    missing = sorted({f"{page.relative_to(ROOT)}: {path}" for page in PAGES for path, _ in _paths(page.read_text())
                      if path.split("/")[0] in REPO_DIRS and path not in ARTIFACTS and not _exists(path)})
    assert not missing, f"the README and docs name paths that do not exist: {missing}"


def test_the_layout_page_names_every_study_module_and_only_those():
    """docs/layout.md stays the map of study/: each room's bullet names exactly its modules."""
    text = (ROOT / "docs" / "layout.md").read_text()
    wrong = []
    top = set(re.findall(r"`study/(\w+)\.py`", text))
    actual = {p.stem for p in (ROOT / "study").glob("*.py") if p.stem != "__init__"}
    if top != actual:
        wrong.append(f"study/: named {sorted(top)}, modules {sorted(actual)}")
    for room in ROOMS[1:-1]:
        bullet = re.search(rf"`study/{room}/` - (.*?)(?=\n\s*- `|\Z)", text, re.S)
        named = set(re.findall(rf"`(?:study/{room}/)?(\w+)\.py`", bullet.group(1))) if bullet else set()
        actual = {p.stem for p in (ROOT / "study" / room).glob("*.py") if p.stem != "__init__"}
        if named != actual:
            wrong.append(f"study/{room}/: named {sorted(named)}, modules {sorted(actual)}")
    assert not wrong, "docs/layout.md is out of date: " + "; ".join(wrong)


def test_one_place_registers_every_subcommand():
    """run_study.subcommands() lists every command once; no package registers one on its own."""
    import run_study

    parser = run_study.build_parser()
    assert set(parser._subparsers._group_actions[0].choices) == set(run_study.subcommands())
    callers = [str(p.relative_to(ROOT)) for p in _package_modules()
               if re.search(r"^\s+(?!def )[\w.]*register_?\w*\(subparsers\)", p.read_text(), re.M)]
    assert callers == [], f"subcommands registered outside run_study.subcommands(): {callers}"


def test_nothing_installed_exists_only_for_tests_or_benchmarks():
    """Every module of the installed packages is imported by the project itself (a package, the
    command line or another module), not only by tests/ or benchmarks/ (those helpers live in
    tests/support/)."""
    used = set().union(*(_imported(p) for p in [*_package_modules(), ROOT / "run_study.py"]))
    unused = [str(p.relative_to(ROOT)) for p in _package_modules()
              if p.name != "__init__.py" and _module_name(p) not in used]
    assert unused == [], f"modules only tests or benchmarks import (move them to tests/support/): {unused}"


def test_no_module_changes_the_environment_when_imported():
    """``os.environ`` is set inside functions only, never by importing a module."""
    changed = []
    for path in [*_package_modules(), ROOT / "run_study.py", *sorted((ROOT / "benchmarks").glob("*.py")),
                 *sorted((ROOT / "tests").rglob("*.py"))]:
        for stmt in ast.parse(path.read_text()).body:   # module level only
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if stmt_is_main_guard(stmt):
                continue
            if "os.environ" in ast.unparse(stmt) and re.search(r"os\.environ(\[.*\]\s*=|\.(setdefault|update|pop)\()",
                                                              ast.unparse(stmt)):
                changed.append(f"{path.relative_to(ROOT)}:{stmt.lineno}")
    assert changed == [], f"environment changed at import: {changed}"


def stmt_is_main_guard(stmt) -> bool:
    return isinstance(stmt, ast.If) and "__name__" in ast.unparse(stmt.test)
