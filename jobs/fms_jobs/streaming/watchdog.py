"""Stall watchdog: a stream that stopped making progress exits so that systemd restarts it.

A failed query ends the driver (exit 2, the unit restarts it). A *hung* one does not: a
Spark master restarted without recovery forgets the application and kills its executors,
so every later job waits for executors forever; a task stuck in a client call can do the
same. The driver stays up, the metrics endpoint answers, nothing restarts it. The query
reports progress after every micro-batch and, when idle, every
``spark.sql.streaming.noDataProgressEventInterval``; no report for ``limit_s`` means the
current batch is stuck. Restarting is safe: the checkpoint replays the unfinished batch and
the batch's outputs are idempotent per batch id.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class StallWatchdog:
    """Seconds since the last sign of progress; ``stalled()`` once that passes the limit.

    ``limit_s`` 0 disables the watchdog. Thread-safe: the query listener beats from
    Spark's listener thread, the driver's main loop asks.
    """

    def __init__(self, limit_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if limit_s < 0:
            raise ValueError("the stall limit must be >= 0 (0 disables the watchdog)")
        self.limit_s = float(limit_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._last = clock()
        self._what = "started"

    def beat(self, what: str) -> None:
        """Record progress (a completed or idle micro-batch)."""
        with self._lock:
            self._last = self._clock()
            self._what = what

    def stalled(self) -> str | None:
        """None while progress is recent (or the watchdog is off); else why the job must restart."""
        if not self.limit_s:
            return None
        with self._lock:
            silent = self._clock() - self._last
            what = self._what
        if silent <= self.limit_s:
            return None
        return (
            f"no micro-batch progress for {silent:.0f} s (limit {self.limit_s:.0f} s; last: {what}); "
            "restarting from the checkpoint"
        )
