"""`audit verify` progress: bar with rate and ETA on a terminal, plain lines otherwise."""

from __future__ import annotations

import io

from gateway.audit.progress import ProgressReporter, format_bar, format_line


def test_bar_shows_share_rate_and_eta() -> None:
    assert format_bar(500, 2000, 2.0) == (
        "[#######-----------------------]  25% 500/2,000 entries, 250/s, ETA 0:06")
    assert format_bar(2000, 2000, 4.0).endswith("2,000/2,000 entries, 500/s, ETA 0:00")
    assert "ETA 1:00:00" in format_bar(1, 3601, 1.0)
    assert format_bar(0, 0, 0.0).startswith("[" + "#" * 30 + "] 100%")


def test_terminal_redraws_in_place_at_most_ten_times_a_second() -> None:
    out, now = io.StringIO(), [0.0]
    reporter = ProgressReporter(out, terminal=True, clock=lambda: now[0])
    for step in range(1, 11):
        now[0] = step * 0.01  # a hundredth of a second apart: one redraw only
        reporter(step * 10, 1000)
    now[0] = 0.5
    reporter(1000, 1000)  # the end is always drawn
    reporter.close()
    assert out.getvalue().count("\r") == 2 and out.getvalue().endswith("\n")


def test_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    reporter = ProgressReporter(out, terminal=False, line_every=100, clock=lambda: 1.0)
    for done in (50, 100, 150, 250, 260):
        reporter(done, 1000)
    reporter.close()
    assert out.getvalue().splitlines() == [format_line(100, 1000, 0.0),
                                           format_line(250, 1000, 0.0)]
    assert "\r" not in out.getvalue()
