"""Progress lines for long jobs (annotation, REPLUG, RAG and judge shards, corpus encoding, search, training).

A job's log is a file (`> {log} 2>&1`), where a terminal progress bar is either disabled or a run of carriage
returns. `Progress` logs one plain line at a fixed interval instead: done/total, rate, ETA and any figures the
job adds (loss, learning rate, tokens per second), plus a last line when the work is done. The interval is
`UTILANNO_PROGRESS_SECONDS` (default 60 s; 0 logs every update).
"""

from __future__ import annotations

import logging
import math
import os
import time

INTERVAL_ENV = "UTILANNO_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 60.0


def interval_from_env() -> float:
    raw = os.environ.get(INTERVAL_ENV)
    if raw is None:
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{INTERVAL_ENV}={raw!r}: expected a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{INTERVAL_ENV}={raw!r}: expected a number of seconds >= 0")
    return value


def clock(seconds: float | None) -> str:
    """h:mm:ss, or '?' when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """Counts work done of `total` (from `initial`, the part a resumed job finds done) and logs a line every
    `interval` seconds of wall time and when the count reaches the total."""

    def __init__(
        self,
        desc: str,
        total: int,
        unit: str = "items",
        initial: int = 0,
        logger: logging.Logger | None = None,
        interval: float | None = None,
    ):
        self.desc, self.total, self.unit, self.initial = desc, total, unit, initial
        self.done = initial
        self.log = logger or logging.getLogger("utilanno.progress")
        self.interval = interval_from_env() if interval is None else interval
        self.start = self.last = time.monotonic()

    def update(self, n: int = 1, **figures) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.interval or self.done >= self.total:
            self.last = now
            self.log.info(self.line(now - self.start, figures))

    def line(self, elapsed: float, figures: dict) -> str:
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else None
        left = (self.total - self.done) / rate if rate else None
        pct = 100.0 * self.done / self.total if self.total else 100.0
        parts = [
            f"{self.desc}: {self.done}/{self.total} {self.unit} ({pct:.1f}%)",
            f"{rate:.3g} {self.unit}/s" if rate is not None else f"? {self.unit}/s",
            f"elapsed {clock(elapsed)}",
            f"ETA {clock(left if self.done < self.total else 0.0)}",
        ]
        parts += [f"{k} {v}" for k, v in figures.items()]
        return ", ".join(parts)
