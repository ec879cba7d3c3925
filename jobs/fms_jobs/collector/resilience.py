"""Retry backoff with jitter and a circuit breaker for the FMS API.

Both take an injectable clock and random generator so their behaviour can be
tested exactly, without sleeping.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with "equal jitter": half the delay is fixed, half is random.

    delay(attempt) is drawn from [d/2, d] where d = min(max_s, base_s * factor**attempt).
    The fixed half guarantees the server real rest; the random half spreads a
    fleet of pollers that failed together so they do not retry in lockstep.
    """

    base_s: float = 0.2
    factor: float = 2.0
    max_s: float = 10.0

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.factor < 1 or self.max_s < self.base_s:
            raise ValueError("backoff needs base_s > 0, factor >= 1 and max_s >= base_s")

    def ceiling(self, attempt: int) -> float:
        return min(self.max_s, self.base_s * self.factor ** max(0, attempt))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        d = self.ceiling(attempt)
        r = (rng or random).random()
        return d / 2 + r * d / 2


class BreakerState(IntEnum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """Closed -> open after ``failure_threshold`` consecutive failures; open -> half-open after
    ``reset_timeout_s``; half-open lets ``half_open_max_calls`` trial calls through: one success
    closes the breaker, one failure opens it again (for another full timeout).
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout_s: float = 30.0,
        half_open_max_calls: int = 1,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        if failure_threshold < 1 or reset_timeout_s <= 0 or half_open_max_calls < 1:
            raise ValueError(
                "breaker needs failure_threshold >= 1, reset_timeout_s > 0, half_open_max_calls >= 1"
            )
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self.half_open_max_calls = half_open_max_calls
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trials = 0
        self.opened_count = 0

    def _set(self, state: BreakerState) -> None:
        if state is not self._state:
            self._state = state
            if state is BreakerState.OPEN:
                self.opened_count += 1
            if self._on_change is not None:
                self._on_change(state)

    @property
    def state(self) -> BreakerState:
        with self._lock:
            self._maybe_half_open()
            return self._state

    def _maybe_half_open(self) -> None:
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.reset_timeout_s:
            self._trials = 0
            self._set(BreakerState.HALF_OPEN)

    def allow(self) -> bool:
        """May a call go out now? (Counts a trial call when half-open.)"""
        with self._lock:
            self._maybe_half_open()
            if self._state is BreakerState.CLOSED:
                return True
            if self._state is BreakerState.HALF_OPEN and self._trials < self.half_open_max_calls:
                self._trials += 1
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._set(BreakerState.CLOSED)

    def record_failure(self) -> None:
        with self._lock:
            self._maybe_half_open()
            if self._state is BreakerState.HALF_OPEN:
                self._opened_at = self._clock()
                self._set(BreakerState.OPEN)
                return
            self._failures += 1
            if self._state is BreakerState.CLOSED and self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
                self._set(BreakerState.OPEN)

    def seconds_until_retry(self) -> float:
        with self._lock:
            if self._state is not BreakerState.OPEN:
                return 0.0
            return max(0.0, self.reset_timeout_s - (self._clock() - self._opened_at))
