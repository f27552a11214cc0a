"""run.py's flags: every one explained in --help with its default shown once and its values listed; a bad
value is one line, not argparse's usage block."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

import run
from kd_ref.plumbing.errors import KdError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def help_text(monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "10000")  # no wrapping
    return run.make_parser().format_help()


def test_every_flag_has_a_help_text_and_shows_its_default_once(monkeypatch):
    monkeypatch.setenv("COLUMNS", "10000")  # one line per flag: argparse wraps words at hyphens
    parser = run.make_parser()
    for action in parser._actions[1:]:  # after --help
        flag = action.option_strings[-1]
        entry = parser._get_formatter()._format_action(action)  # this flag's line of --help
        assert action.help, f"{flag} has no help text"
        shown = entry.count("default")
        if action.default is None or action.default is False:
            assert shown <= 1, entry  # a help may say what happens without the flag, once
        else:
            assert shown == 1 and f"(default: {action.default})" in entry, entry


@pytest.mark.parametrize("flag, values", [("--loss-norm", "auto,ema,none"), ("--action-norm", "sum,none"),
                                          ("--episode-data", "same,fresh"), ("--corrupt", "none,resk,feak,relk"),
                                          ("--reward-baseline", "phase,none"), ("--reward-split", "train,dev")])
def test_flags_with_a_fixed_set_of_values_list_them(help_text, flag, values):
    assert f"{flag} {{{values}}}" in help_text
    with pytest.raises(KdError, match=f"^{flag}: invalid choice: 'x'"):
        run.parse_args([flag, "x"])


@pytest.mark.parametrize("flag, value, expected", [("--lr", "x", "expected a number, got 'x'"),
                                                   ("--epochs", "2.5", "expected a whole number, got '2.5'"),
                                                   ("--gamma", "", "expected a number, got ''")])
def test_a_bad_number_is_one_line_naming_the_flag(flag, value, expected):
    with pytest.raises(KdError, match=f"^{flag}: {re.escape(expected)}"):
        run.parse_args([flag, value])


def test_a_bad_flag_through_run_py_is_one_line_and_exit_2():
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), "--lr", "x"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == ["error: --lr: expected a number, got 'x'"]
