"""Answers an AWS SDK's retry of a request the emulator already carried out with the first answer.

Every AWS SDK (Go v2 in the Terraform provider, botocore in boto3) tags each API call with an
`amz-sdk-invocation-id` that stays the same across the call's retries, and each attempt with
`amz-sdk-request: attempt=N; ...`. On a loaded machine the emulator sometimes answers so late that
the SDK gives the attempt up and sends it again; moto then runs the call a second time, and a
create that succeeded the first time fails the second (`InvalidGroup.Duplicate`): in one CI run the
Terraform suite lost its apply that way. Real AWS answers in milliseconds, so the retry never meets
a finished call there. This WSGI middleware makes the emulator behave as if it had: a retry of an
invocation it has already answered (or is still answering) gets that answer, byte for byte, and
moto never sees it. A new invocation with the same content is a new call and still refused.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# Reads change nothing, so a replayed GET is harmless and may be large (S3 objects): not kept.
MUTATING_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})
# A retry comes within the SDK's backoff (seconds); a bounded memory of recent answers suffices.
KEEP_ANSWERS = 4096
KEEP_FOR_S = 600.0
# An answer larger than this is not kept (mutating calls answer with small documents).
MAX_KEPT_BODY = 1 << 20
# How long a retry waits for the first attempt, still running, to answer.
WAIT_FOR_FIRST_S = 300.0


@dataclass
class Answer:
    status: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    done: threading.Event = field(default_factory=threading.Event)
    kept: bool = True
    at: float = field(default_factory=time.monotonic)


def attempt_number(environ: dict[str, Any]) -> int:
    """The SDK's attempt number from `amz-sdk-request: attempt=2; max=25` (1 when absent)."""
    for part in environ.get("HTTP_AMZ_SDK_REQUEST", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == "attempt" and value.isdigit():
            return int(value)
    return 1


class SdkRetryReplay:
    """WSGI middleware: one execution per SDK invocation of a mutating call."""

    def __init__(self, app: WsgiApp, log: Callable[[str], None] = print) -> None:
        self.app = app
        self.log = log
        self.replayed = 0
        self._answers: OrderedDict[str, Answer] = OrderedDict()
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        # moto's server calls methods of its dispatcher app (e.g. reset); pass them through.
        return getattr(self.app, name)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        invocation = environ.get("HTTP_AMZ_SDK_INVOCATION_ID", "")
        if not invocation or environ.get("REQUEST_METHOD", "GET") not in MUTATING_METHODS:
            return self.app(environ, start_response)
        attempt = attempt_number(environ)
        with self._lock:
            self._forget_old()
            earlier = self._answers.get(invocation)
            if earlier is None:
                mine = self._answers[invocation] = Answer()
        if earlier is not None and attempt > 1:
            return self._replay(invocation, attempt, earlier, environ, start_response)
        if earlier is not None:
            # Attempt 1 twice under one id is not a retry: run it.
            return self.app(environ, start_response)
        return self._run_and_keep(mine, environ, start_response)

    def _run_and_keep(
        self, mine: Answer, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        captured: dict[str, Any] = {}

        def keep_start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, list(headers)
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        try:
            body = b"".join(self.app(environ, keep_start))
        except BaseException:
            mine.kept = False
            mine.done.set()
            raise
        mine.status = captured.get("status", "500 INTERNAL SERVER ERROR")
        mine.headers = captured.get("headers", [])
        mine.kept = len(body) <= MAX_KEPT_BODY
        mine.body = body if mine.kept else b""
        mine.done.set()
        return [body]

    def _replay(
        self,
        invocation: str,
        attempt: int,
        earlier: Answer,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
    ) -> Iterable[bytes]:
        if not earlier.done.wait(WAIT_FOR_FIRST_S) or not earlier.kept:
            return self.app(environ, start_response)
        self.replayed += 1
        self.log(
            f"sdk-retry-replay: attempt {attempt} of invocation {invocation} "
            f"({environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO', '/')}) answered with the first "
            f"attempt's {earlier.status.split(' ', 1)[0]} ({self.replayed} replayed so far)"
        )
        start_response(earlier.status, list(earlier.headers))
        return [earlier.body]

    def _forget_old(self) -> None:
        now = time.monotonic()
        while self._answers:
            oldest_id, oldest = next(iter(self._answers.items()))
            if len(self._answers) <= KEEP_ANSWERS and now - oldest.at <= KEEP_FOR_S:
                break
            if not oldest.done.is_set():
                break
            del self._answers[oldest_id]
