"""Progress of a long `audit verify`: a bar with rate and ETA on a terminal, plain lines
elsewhere. The formatting is pure; the reporter only decides when to write."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 30


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_bar(done: int, total: int, elapsed: float) -> str:
    """'[######------] 45% 1,234/2,700 entries, 412/s, ETA 0:04'."""
    share = done / total if total else 1.0
    filled = int(share * BAR_WIDTH)
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = _duration((total - done) / rate) if rate > 0 and done < total else "0:00"
    return (f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {share:4.0%} "
            f"{done:,}/{total:,} entries, {rate:,.0f}/s, ETA {eta}")


def format_line(done: int, total: int, elapsed: float) -> str:
    rate = done / elapsed if elapsed > 0 else 0.0
    return f"verified {done:,} of {total:,} entries ({rate:,.0f}/s)"


class ProgressReporter:
    """`progress(done, total)` for verify_log: redraws a bar on a terminal at most
    `redraw_every` seconds apart, or prints a line every `line_every` entries."""

    def __init__(
        self,
        stream: TextIO,
        *,
        terminal: bool,
        line_every: int = 1_000_000,
        redraw_every: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._terminal = terminal
        self._line_every = line_every
        self._redraw_every = redraw_every
        self._clock = clock
        self._started = clock()
        self._last_draw = -float("inf")
        self._next_line = line_every
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        now = self._clock()
        elapsed = now - self._started
        if self._terminal:
            if now - self._last_draw >= self._redraw_every or done >= total:
                self._stream.write("\r" + format_bar(done, total, elapsed))
                self._stream.flush()
                self._last_draw, self._drawn = now, True
        elif done >= self._next_line:
            self._stream.write(format_line(done, total, elapsed) + "\n")
            self._stream.flush()
            self._next_line = (done // self._line_every + 1) * self._line_every

    def close(self) -> None:
        """End the bar's line so the report starts on a fresh one."""
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
