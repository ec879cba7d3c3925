"""Progress lines a person can follow: `[lab +12.3s] step...`."""

from __future__ import annotations

import sys
import time

_START = time.monotonic()


def restart() -> None:
    """Reset the clock (one command = one timeline)."""
    global _START
    _START = time.monotonic()


def elapsed() -> float:
    return time.monotonic() - _START


def step(message: str) -> None:
    print(f"[lab +{elapsed():.1f}s] {message}", flush=True)


def warn(message: str) -> None:
    print(f"[lab +{elapsed():.1f}s] WARNING: {message}", file=sys.stderr, flush=True)
