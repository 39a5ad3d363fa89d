"""A progress bar for the CLI and the demo (directory loads, fan-out, receipts).

Where it sits: beside ``streams.cli`` and ``streams.demo``, which both draw progress; it owns no
data, callers hand it counts read from Kafka (``streams.receipts.status``,
``streams.receipts.observe``).
"""

from __future__ import annotations

import sys
import time

__all__ = ["ProgressBar"]


class ProgressBar:
    """A one-line progress bar on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self, label: str, total: int, *, rate: bool = True) -> None:
        """``rate=False`` for work this process only watches (a fan-out): the rate would be
        the watcher's, late by its polling, not the work's; the caller reports that."""
        self.label, self.total, self.rate = label, max(total, 1), rate
        self.started = time.monotonic()
        self._tty = sys.stderr.isatty()
        self._last = -1.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        finished = done >= self.total
        if not finished and now - self._last < (0.1 if self._tty else 2.0):
            return
        self._last = now
        frac = min(done / self.total, 1.0)
        bar = "#" * int(frac * 30)
        line = f"{self.label} [{bar:<30}] {done:,}/{self.total:,} {frac:6.1%}"
        if self.rate:
            line += f" {done / max(now - self.started, 1e-9):,.0f}/s"
        sys.stderr.write(("\r" + line) if self._tty else line + "\n")
        if finished and self._tty:
            sys.stderr.write("\n")
        sys.stderr.flush()
