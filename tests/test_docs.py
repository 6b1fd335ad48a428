"""The README and the pages under docs/ say only what is true of this checkout.

Pages: ``README.md`` and ``docs/*.md``. ``CHANGELOG.md`` is history (it names old paths on
purpose): only its links are checked. Only fenced code blocks count as code; every other line is
prose, whose inline code spans (`like this`, possibly wrapped over lines) are read too.

**Paths.** A path is a word that starts with one of the repository's folders (``study/``,
``lensnets/``, ``data_io/``, ``common/``, ``tests/``, ``benchmarks/``, ``configs/``, ``deploy/``,
``docs/``) or with a folder that commands write (``runs/``, ``data/``, ``eval/``), and that does
not follow a letter, digit or one of ``/ . - ~ : $ {`` (so ``/home/ray/data/x``,
``~/lens-study``, ``s3://...``, ``runs:/RUN_ID/model`` and ``benchmarks/data/...``'s inner
``data/`` are not separate paths). Placeholders stand for any one name: ``<study>``, a word of
capitals (``NAME``, ``RUN_ID``) and ``*``.

- A repository path must exist (with placeholders: match something). ``ARTIFACTS`` lists the
  few that name files inside an MLflow run, not in the checkout.
- A written path (``runs/``, ``data/``, ``eval/``) must be produced by a command named earlier
  on the same page (:func:`products`): ``tune`` writes ``runs/<study>`` and ``runs/<study>.state``
  (the study name from ``--name`` or its config) and its config's ``data.path`` when it simulates
  it; ``best`` ``runs/<study>.best``, ``verdict`` ``runs/<study>.verdict``, ``evaluate``
  ``runs/evaluate-...`` (``--run-id`` names no study, so no folder); any command,
  ``run_study.py`` or a benchmark script, writes what its
  ``--out`` names. ``WRITTEN_ELSEWHERE`` is the allow-list of the others, each with its reason.

**Commands.** Every ``python run_study.py ...`` (also ``python3``, or ``python PATH/run_study.py``)
in a fenced block or an inline code span, read the way a shell reads it:

- lines ending in ``\\`` continue on the next line; the command ends at a shell operator
  (``&&``, ``;``, ``|``, ``>``...), at a word starting with ``#`` (a comment), or at the end of
  the quoted string it sits in (``bash -c '... python run_study.py ...'``);
- optional parts written ``[--opt VALUE]`` are included; a bracketed part that does not start
  with ``-`` (``[your options]``) and a bare ``...`` are dropped;
- ``<head>``-style placeholders become one word; placeholders (capitals such as ``N``, ``DIR``,
  ``RUN_ID``, and ``$VARS``) are kept as text, except as the value of an option that takes a
  number, where they become 1;
- the words are parsed by ``run_study.build_parser()``, after inserting ``tune`` when the first
  word is not a command (as ``run_study.main`` does); a ``tune`` command's ``--set`` values are
  then checked by ``study.config.load_config`` with its ``--config`` file (the default without
  one; not checked when ``--config`` is a placeholder). ``python /app/run_study.py`` (the
  repository installed at ``/app``) reads ``--config /app/X`` as the repository's ``X``.

The same rules read the command lines of ``run_study.py``'s docstring.

**Links.** Every relative Markdown link in the README, the docs and the changelog points to a
file that exists (``#anchors`` are not checked). Nothing here runs a study; the whole module takes
well under a second after the imports.
"""
from __future__ import annotations

import argparse
import contextlib
import fnmatch
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINKED = [*PAGES, ROOT / "CHANGELOG.md"]

REPO_DIRS = ("study", "lensnets", "data_io", "common", "tests", "benchmarks", "configs", "deploy", "docs")
WRITTEN_DIRS = ("runs", "data", "eval")
PATH_RE = re.compile(r"(?<![\w/.\-~:${])((?:%s)/[\w./*<>+-]*)" % "|".join(REPO_DIRS + WRITTEN_DIRS))
PLACEHOLDER_RE = re.compile(r"<[\w+.-]+>|(?<![A-Za-z0-9])[A-Z]{2,}[A-Z0-9_]*(?![a-z0-9])")

#: paths inside an MLflow run (the study's parent run), not files of the checkout
ARTIFACTS = {
    "study/config.yaml": "the resolved config, an artifact of the study's MLflow run",
    "study/dataset.json": "the dataset metadata, an artifact of the study's MLflow run",
    "study/search_space.json": "the search space, an artifact of the study's MLflow run",
}
#: written paths that no command on their page produces, and why that is right
WRITTEN_ELSEWHERE = {
    "runs/": "the folder of every study (tune.storage_path's default), named where a page says where "
             "studies live, e.g. docs/slurm.md before its job script runs `tune`",
}

COMMAND_RE = re.compile(r"\bpython3? +(\S*/)?run_study\.py\b")
OPERATORS = set(";&|<>()")


@dataclass
class Snippet:
    text: str     # a code line (continuations joined) or an inline code span
    offset: int   # where it starts on the page


@dataclass
class Command:
    argv: list[str]
    offset: int
    source: str
    prefix: str   # the folder run_study.py was run from, e.g. "/app/" ("" for the repository root)


def _fenced_and_prose(text: str) -> tuple[list[Snippet], list[Snippet]]:
    """(code lines of fenced blocks, continuations joined; prose paragraphs) with their offsets."""
    code, prose, fence, pending, para = [], [], None, None, None
    offset = 0
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = None if fence else stripped
        elif fence:
            body = line.rstrip("\n")
            start = pending.offset if pending else offset
            joined = (pending.text + " " if pending else "") + body.rstrip("\\").strip()
            pending = Snippet(joined, start) if body.rstrip().endswith("\\") else None
            if not pending:
                code.append(Snippet(joined, start))
        elif not stripped:
            if para:
                prose.append(para)
            para = None
        else:
            para = Snippet(para.text + line, para.offset) if para else Snippet(line, offset)
        offset += len(line)
    if para:
        prose.append(para)
    return code, prose


def _inline_spans(paragraph: Snippet) -> list[Snippet]:
    text = paragraph.text.replace("\n", " ")
    return [Snippet(m.group(1), paragraph.offset + m.start()) for m in re.finditer(r"`([^`]+)`", text)]


def _quote_state(prefix: str) -> str | None:
    """The quote a shell is inside after reading ``prefix``: ``'``, ``"`` or None."""
    state, escaped = None, False
    for ch in prefix:
        if escaped:
            escaped = False
        elif ch == "\\" and state != "'":
            escaped = True
        elif state is None and ch in "'\"":
            state = ch
        elif ch == state:
            state = None
    return state


def _words(rest: str) -> list[str]:
    rest = re.sub(r"(?:(?<=\s)|^)\[([^\[\]]*)\]", lambda m: m.group(1) if m.group(1).startswith("-") else "", rest)
    rest = re.sub(r"<[\w+.-]+>", "PLACEHOLDER", rest)
    lexer = shlex.shlex(rest, posix=True, punctuation_chars=True)
    lexer.whitespace_split, lexer.commenters = True, ""
    words = []
    for word in lexer:
        if word.startswith("#") or set(word) <= OPERATORS:
            break
        if word != "...":
            words.append(word)
    return words


def commands(snippets: list[Snippet]) -> list[Command]:
    found = []
    for snip in snippets:
        for match in COMMAND_RE.finditer(snip.text):
            rest = snip.text[match.end():]
            quote = _quote_state(snip.text[:match.start()])
            if quote:
                rest = rest.split(quote, 1)[0]
            found.append(Command(_words(rest), snip.offset, snip.text.strip(), match.group(1) or ""))
    return found


def page_commands(text: str) -> list[Command]:
    code, prose = _fenced_and_prose(text)
    spans = [span for para in prose for span in _inline_spans(para)]
    return sorted(commands(code) + commands(spans), key=lambda c: c.offset)


def _is_placeholder(word: str) -> bool:
    return bool(re.fullmatch(r"[A-Z][A-Z0-9_]*|PLACEHOLDER|\$.*", word))


def _parser() -> argparse.ArgumentParser:
    import run_study

    return run_study.build_parser()


def _subparsers(parser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _with_numbers(sub: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """Placeholders given to options that convert their value (numbers) become 1 (``--workers N``, ``--epochs=N``)."""
    numeric = {s for a in sub._actions if a.type not in (None, str) for s in a.option_strings}
    out = list(argv)
    for i, word in enumerate(out):
        name, eq, value = word.partition("=")
        if eq and name in numeric and _is_placeholder(value):
            out[i] = f"{name}=1"
        elif word in numeric and i + 1 < len(out) and _is_placeholder(out[i + 1]):
            out[i + 1] = "1"
    return out


def parse(command: Command) -> argparse.Namespace:
    """The command's words through the real parser (``tune`` inserted as ``main`` inserts it)."""
    parser = _parser()
    subs = _subparsers(parser)
    argv = list(command.argv)
    if not argv or (argv[0] not in subs and argv[0] not in ("-h", "--help")):
        argv.insert(0, "tune")
    argv = [argv[0], *_with_numbers(subs[argv[0]], argv[1:])]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return parser.parse_args(argv)
    except SystemExit:
        raise AssertionError(f"{command.source!r}: {err.getvalue().strip()}") from None


def _config(args: argparse.Namespace, prefix: str):
    from study.config import load_config

    path = args.config
    if path and prefix and path.startswith(prefix):
        path = path[len(prefix):]
    return load_config(ROOT / path if path else None, args.overrides)


def products(command: Command) -> list[str]:
    """The paths a command writes (placeholders kept: they match any name)."""
    args = parse(command)
    out = [args.out] if getattr(args, "out", None) else []
    if args.command == "tune" and not _is_placeholder(args.config or "x"):
        config = _config(args, command.prefix)
        name = args.name or config.name
        out += [f"{config.tune.storage_path}/{name}", f"{config.tune.storage_path}/{name}.state"]
        if config.data.simulate is not None:
            out.append(config.data.path)
    elif args.command in ("best", "verdict") and not args.out and args.study:
        out.append(f"runs/{args.study}.{args.command}")   # (with --run-id: the run's study, unknown here)
    elif args.command == "evaluate" and not args.out:
        out.append("runs/evaluate-NAME")
    return out


def _other_outs(snippet: Snippet) -> list[str]:
    """``--out X`` of any other command line (a benchmark script, for example)."""
    if COMMAND_RE.search(snippet.text):
        return []
    words = snippet.text.split()
    return [words[i + 1] for i, w in enumerate(words[:-1]) if w == "--out"] + \
           [w.split("=", 1)[1] for w in words if w.startswith("--out=")]


def _segments(path: str) -> list[str]:
    return [PLACEHOLDER_RE.sub("*", s) for s in path.strip("/").split("/") if s not in ("", ".")]


def _covers(product: str, path: str) -> bool:
    """``path`` lies in or above what ``product`` names; a placeholder matches any name."""
    a, b = _segments(product), _segments(path)
    return all(fnmatch.fnmatchcase(x, y) or fnmatch.fnmatchcase(y, x) for x, y in zip(a, b))


def _paths(text: str) -> list[tuple[str, int]]:
    return [(m.group(1).rstrip(".,;:"), m.start(1)) for m in PATH_RE.finditer(text)]


def _exists(path: str) -> bool:
    pattern = "/".join(_segments(path))
    return bool(list(ROOT.glob(pattern))) if "*" in pattern else (ROOT / pattern).exists()


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_command_line_parses(page):
    found = page_commands(page.read_text())
    bad = []
    for command in found:
        try:
            args = parse(command)
            if args.command == "tune" and not _is_placeholder(args.config or "x"):
                _config(args, command.prefix)
        except Exception as err:   # noqa: BLE001 - report every bad line at once
            bad.append(f"{command.source!r}: {err}")
    assert not bad, f"{_page_id(page)}: command lines that fail:\n" + "\n".join(bad)


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_every_path_exists_or_is_written_by_a_command_before_it(page):
    text = page.read_text()
    code, prose = _fenced_and_prose(text)
    written = [(c.offset, p) for c in page_commands(text) for p in products(c)]
    written += [(s.offset, p) for s in code for p in _other_outs(s)]
    written += [(s.offset, p) for para in prose for s in _inline_spans(para) for p in _other_outs(s)]
    missing = []
    for path, at in _paths(text):
        if path.split("/")[0] in WRITTEN_DIRS:
            if path not in WRITTEN_ELSEWHERE and not any(o < at and _covers(p, path) for o, p in written):
                missing.append(f"{path} (no command before it on the page writes it)")
        elif path not in ARTIFACTS and not _exists(path):
            missing.append(f"{path} (not in the repository)")
    assert not missing, f"{_page_id(page)} names: " + "; ".join(sorted(set(missing)))


@pytest.mark.parametrize("page", LINKED, ids=_page_id)
def test_every_relative_link_points_to_a_file(page):
    code, prose = _fenced_and_prose(page.read_text())
    broken = []
    for para in prose:
        for target in re.findall(r"\]\(([^)\s]+)\)", para.text.replace("\n", " ")):
            if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(target)
    assert not broken, f"{_page_id(page)} links to missing files: {broken}"


def test_the_command_lines_in_run_study_docstring_parse():
    import run_study

    found = commands([Snippet(line, 0) for line in (run_study.__doc__ or "").splitlines()])
    assert len(found) >= 5
    for command in found:
        args = parse(command)
        if args.command == "tune":
            _config(args, "")


def test_mlflow_commands_in_the_docs_bind_to_localhost():
    """What tests/test_security_checks.py asks of the README's commands, for every page."""
    wide = [f"{_page_id(p)}: {line.strip()}" for p in PAGES for line in p.read_text().splitlines()
            if ("mlflow ui" in line or "mlflow server" in line) and "0.0.0.0" in line]
    assert not wide, wide


def test_the_docs_index_lists_every_page():
    index = (ROOT / "docs" / "index.md").read_text()
    unlisted = [p.name for p in PAGES[1:] if p.name != "index.md" and f"]({p.name})" not in index]
    assert not unlisted, f"docs/index.md does not list {unlisted}"


# --- the rules above, on small examples -------------------------------------------------------

def test_the_extraction_reads_commands_as_a_shell_would():
    text = "\n".join([
        "Run `python run_study.py models [--input-size 65] [--widths 0.25,0.5,1] [--width-mode",
        "params]` first.",
        "",
        "```bash",
        "python3 -m venv .venv && . .venv/bin/activate && python run_study.py",
        "python run_study.py simulate --per-class N --out data/x [--workers N]   # a comment",
        "ray job submit -- bash -c \\",
        "    'cd ~/x && python run_study.py best --study s --tracking-uri \"http://${RAY_ADDRESS%:*}:5000\"'",
        "python /app/run_study.py tune --config CONFIG --address <head>:<port> [your options]",
        "```",
    ])
    got = [c.argv for c in page_commands(text)]
    assert got == [
        ["models", "--input-size", "65", "--widths", "0.25,0.5,1", "--width-mode", "params"],
        [],
        ["simulate", "--per-class", "N", "--out", "data/x", "--workers", "N"],
        ["best", "--study", "s", "--tracking-uri", "http://${RAY_ADDRESS%:*}:5000"],
        ["tune", "--config", "CONFIG", "--address", "PLACEHOLDER:PLACEHOLDER"],
    ]
    for command in page_commands(text):
        parse(command)
    assert page_commands(text)[-1].prefix == "/app/"


def test_a_wrong_command_or_setting_is_caught():
    with pytest.raises(AssertionError, match="unrecognized arguments"):
        parse(page_commands("`python run_study.py best --study s --bogus`")[0])
    args = parse(page_commands("`python run_study.py tune --set trials=8`")[0])
    from common.errors import UsageError

    with pytest.raises(UsageError, match="trials"):
        _config(args, "")


def test_written_paths_need_a_command_before_them():
    assert products(page_commands("`python run_study.py best --study lens-study`")[0]) == ["runs/lens-study.best"]
    assert _covers("runs/lens-study.best", "runs/NAME.best/model_weights.pt")
    assert _covers("runs/lens-study.state", "runs/<study>.state/asha.json")
    assert not _covers("runs/lens-study.best", "runs/lens-study.final.best/model_weights.pt")
    tune = products(page_commands("`python run_study.py`")[0])
    assert tune == ["runs/lens-study", "runs/lens-study.state", "data/small64"]
    assert [p for p, _ in _paths("see ~/lens-study, /home/ray/data/x, runs:/ID/model and runs/a.")] == ["runs/a"]
