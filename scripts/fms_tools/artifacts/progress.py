"""Progress lines with elapsed time, flushed immediately so long builds show life."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

_START = time.monotonic()


def elapsed() -> float:
    return time.monotonic() - _START


def say(message: str) -> None:
    print(f"[artifacts {elapsed():7.1f}s] {message}", file=sys.stderr, flush=True)


@contextmanager
def step(message: str) -> Iterator[None]:
    """Print `message`, run the block, then print how long it took."""
    began = time.monotonic()
    say(f"{message} ...")
    yield
    say(f"{message}: done in {time.monotonic() - began:.1f}s")
