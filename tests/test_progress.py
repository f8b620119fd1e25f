"""Progress off a terminal: no bar, one summary line (nlkd.progress), in every command that loops."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from nlkd.cli import main
from nlkd.progress import is_terminal, progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_one_summary_line_and_no_redraws() -> None:
    log = io.StringIO()
    assert list(progress(range(5), "auditing", unit="batch", file=log)) == [0, 1, 2, 3, 4]
    lines = log.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("auditing: 5 batches in ") and lines[0].endswith(" s")
    assert "\r" not in log.getvalue()


def test_summary_is_left_out_when_asked_or_hidden_or_empty() -> None:
    for kwargs, items in (({"summary": False}, range(3)), ({"show": False}, range(3)), ({}, [])):
        log = io.StringIO()
        assert list(progress(items, "x", file=log, **kwargs)) == list(items)
        assert log.getvalue() == ""


def test_on_a_terminal_a_bar_and_no_summary_line() -> None:
    term = _Terminal()
    assert is_terminal(term) and not is_terminal(io.StringIO())
    bar = progress(range(3), "teacher maps", unit="batch", file=term)
    for _ in bar:
        bar.set_postfix(loss="1.0")
    drawn = term.getvalue()
    assert "teacher maps" in drawn and "\r" in drawn and "teacher maps: 3 batches in" not in drawn


def test_nlkd_corrupt_off_a_terminal_writes_one_line(tiny_data: Path, tmp_path: Path, capsys) -> None:
    src, dst = tiny_data / "labels" / "train", tmp_path / "coarse"
    assert main(["corrupt", "--src", str(src), "--dst", str(dst), "--ratio", "0.5", "--seed", "0"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    assert [ln for ln in err.splitlines() if ln.startswith("corrupt (dilate_erode): 16 masks in ")], err


def test_no_module_draws_tqdm_directly() -> None:
    """Every loop goes through nlkd.progress (one place decides terminal or log file)."""
    src = Path(__file__).resolve().parents[1] / "src" / "nlkd"
    users = sorted(p.relative_to(src).as_posix() for p in src.rglob("*.py") if "tqdm" in p.read_text())
    assert users == ["progress.py"]


@pytest.mark.parametrize("shown", [True, False])
def test_train_loop_shows_no_summary_of_its_own(shown: bool) -> None:
    from nlkd.train import _progress

    bar = _progress(iter(range(2)), "epoch 1/1", shown)
    assert list(bar) == [0, 1]
    bar.set_postfix(loss="0.5")  # a no-op off a terminal
