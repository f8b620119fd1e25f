"""The demo's summary table: the gain of reweight and nlkd over the baseline and the share of the
clean/baseline gap it recovers, withheld when that gap is too small to share out."""

from __future__ import annotations

from nlkd.demo import format_table


def _results(clean: float, base: float, ours: float) -> dict[str, dict[str, float]]:
    return {
        "clean": {"miou": clean, "bf": clean},
        "baseline": {"miou": base, "bf": base},
        "reweight": {"miou": ours, "bf": ours},
        "nlkd": {"miou": base, "bf": base},
    }


def test_format_table_rows_and_share_of_the_gap() -> None:
    out = format_table(_results(0.60, 0.50, 0.55)).splitlines()
    assert out[0].split() == ["method", "mIoU", "BF"]
    assert out[1].split() == ["clean", "60.00", "60.00"]
    gain = "reweight - baseline on mIoU: +5.00 points (one seed)"
    assert f"{gain}, 50% of the clean/baseline gap (10.00) recovered" in out
    assert "nlkd - baseline on BF: +0.00 points (one seed), 0% of the clean/baseline gap (10.00) recovered" in out


def test_format_table_gives_no_share_of_a_tiny_or_negative_gap() -> None:
    tiny = format_table(_results(0.5009, 0.50, 0.52))
    assert "reweight - baseline on mIoU: +2.00 points (one seed), the clean/baseline gap (0.09) is too small" in tiny
    assert "%" not in tiny.split("reweight - baseline on mIoU")[1].splitlines()[0]
    negative = format_table(_results(0.48, 0.50, 0.52))
    assert "the clean/baseline gap (-2.00) is too small to share out" in negative
