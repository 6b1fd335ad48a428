"""The end-of-study summary (study/cli.py): what the console shows after a study."""
from __future__ import annotations

from pathlib import Path

import pandas as pd


def _board(n: int) -> pd.DataFrame:
    return pd.DataFrame({"trial": [f"C4 w0.10 lr{i}" for i in range(n)], "status": ["completed"] * n,
                         "epochs": [2] * n, "best": [0.5 + i / 100 for i in range(n)], "model": ["C4"] * n,
                         "run_id": [f"r{i}" for i in range(n)]})


def test_a_cut_leaderboard_says_how_many_more_and_where(capsys):
    from study.cli import SHOWN_TRIALS, print_summary
    from study.config import load_config
    from study.search.tuner import StudyOutcome

    config = load_config(None, [])
    print_summary(StudyOutcome(config, "1", "p1", _board(SHOWN_TRIALS + 1), Path("runs/lens-study.state/artifacts")))
    out = capsys.readouterr().out
    assert "16 trials" in out
    assert f"... 1 more in {Path('runs/lens-study.state/artifacts/leaderboard.csv')}" in out
    print_summary(StudyOutcome(config, "1", "p1", _board(SHOWN_TRIALS), Path("runs")))
    assert "more in" not in capsys.readouterr().out
