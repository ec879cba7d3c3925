"""The lab's standing alert receiver: where the lab's Alertmanagers deliver their webhooks.

An operator's Alertmanager always has somebody to tell; without a listener the lab's
Alertmanager failed every notification and fired `AlertmanagerNotificationsFailing` on
every plain `make lab`. This receiver stands in for the operator's paging system: it
answers every Alertmanager webhook (the lab's `alertmanager_webhook_urls`, the primary
bridge's gateway address) and appends each alert of each notification, as one JSON line,
to <lab>/logs/alerts.jsonl:

    {"received": 1796577662.1, "status": "firing", "labels": {...}, "annotations": {...},
     "startsAt": "...", "endsAt": "...", "fingerprint": "...", "receiver": "fms-critical"}

`fms-lab status` shows what is firing now; the alert drills (tests/lab/test_lab_alerts.py)
read the file to time each fault to its notification. It runs as its own process
(`python -m fms_tools.lab.alert_receiver`), started by `lab up` of the env whose bridge carries the
address and stopped by `down`, as the artifact mirror is.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from fms_tools.fmsops import procs

from . import progress, state

CONFIG = state.REPO / "inventory" / "lab" / "group_vars" / "all" / "lab_monitoring.yml"
# A webhook body larger than this is not Alertmanager's (max_alerts bounds its size).
MAX_BODY_BYTES = 8 * 2**20
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
HEALTH_PATH = "/-/healthy"


@dataclass(frozen=True)
class Endpoint:
    url: str  # the webhook URL Alertmanager posts to
    address: str
    port: int
    path: str


def endpoint_of(url: str) -> Endpoint:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or not parts.port:
        raise ValueError(f"the lab's alert receiver serves plain http://address:port/path URLs, not {url!r}")
    return Endpoint(url, parts.hostname, parts.port, parts.path or "/")


def configured() -> Endpoint:
    """The webhook the lab's Alertmanagers are configured with (the first of their URLs)."""
    urls = (yaml.safe_load(CONFIG.read_text()) or {}).get("alertmanager_webhook_urls") or []
    if not urls:
        raise SystemExit(f"{CONFIG}: alertmanager_webhook_urls is empty; the lab's alerts would reach nobody")
    return endpoint_of(urls[0])


def alerts_file() -> Path:
    return state.logs_dir() / "alerts.jsonl"


# ---------------------------------------------------------------------------- the server


def alert_lines(payload: dict[str, Any], received: float) -> list[str]:
    """One JSON line per alert of an Alertmanager webhook payload (version 4)."""
    lines = []
    for alert in payload.get("alerts") or []:
        record = {
            "received": round(received, 3),
            "status": alert.get("status", ""),
            "labels": alert.get("labels") or {},
            "annotations": alert.get("annotations") or {},
            "startsAt": alert.get("startsAt", ""),
            "endsAt": alert.get("endsAt", ""),
            "fingerprint": alert.get("fingerprint", ""),
            "receiver": payload.get("receiver", ""),
        }
        lines.append(json.dumps(record, sort_keys=True))
    return lines


def make_server(address: str, port: int, out: Path) -> ThreadingHTTPServer:
    """A webhook server appending to `out`; refuses what is not an Alertmanager payload with 400
    (Alertmanager would retry a 5xx forever) and never stops serving over one bad request."""
    lock = threading.Lock()
    out.parent.mkdir(parents=True, exist_ok=True)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # health probe for `up` and `status`
            self._answer(
                200 if self.path == HEALTH_PATH else 404, b"ok\n" if self.path == HEALTH_PATH else b""
            )

        def do_POST(self) -> None:
            received = time.time()
            try:
                size = int(self.headers.get("Content-Length", "0"))
                if not 0 < size <= MAX_BODY_BYTES:
                    raise ValueError(f"a body of {size} bytes")
                payload = json.loads(self.rfile.read(size))
                if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
                    raise ValueError("no alerts list")
            except (ValueError, UnicodeDecodeError) as exc:
                self.log_message("refused a webhook: %s", exc)
                self._answer(400, f"not an Alertmanager webhook: {exc}\n".encode())
                return
            lines = alert_lines(payload, received)
            with lock, out.open("a", encoding="utf-8") as fh:
                fh.writelines(line + "\n" for line in lines)
            self._answer(200, b"")

        def _answer(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: Any) -> None:
            sys.stderr.write(f"{time.strftime('%H:%M:%S')} {self.address_string()} {fmt % args}\n")

    return ThreadingHTTPServer((address, port), Handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alert_receiver", description=__doc__.splitlines()[0])
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True, help="the JSON-lines file alerts are appended to")
    args = parser.parse_args(argv)
    server = make_server(args.bind, args.port, args.out)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    print(f"alert receiver: serving http://{args.bind}:{args.port}/ -> {args.out}", flush=True)
    server.serve_forever()
    server.server_close()
    return 0


# ---------------------------------------------------------------------------- reading what arrived


@dataclass(frozen=True)
class Notice:
    received: float
    status: str
    labels: dict[str, str]


def read(path: Path, since: float = 0.0) -> list[Notice]:
    """Every alert delivered at or after `since`, oldest first (a torn last line is skipped)."""
    notices = []
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("received", 0) >= since:
            notices.append(Notice(rec["received"], rec.get("status", ""), rec.get("labels") or {}))
    return notices


def firing_now(notices: Iterable[Notice]) -> list[dict[str, str]]:
    """The alerts whose last notification says firing (by their label set), sorted by name."""
    last: dict[tuple[tuple[str, str], ...], Notice] = {}
    for n in notices:
        last[tuple(sorted(n.labels.items()))] = n
    return sorted((n.labels for n in last.values() if n.status == "firing"), key=lambda x: sorted(x.items()))


# ---------------------------------------------------------------------------- the process, for `up`/`down`

# Marker in the process environment: `down` finds the receivers this lab dir started.
MARKER_ENV = "FMS_LAB_ALERT_RECEIVER"


def answers(ep: Endpoint, timeout_s: float = 2.0) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # on this machine: no proxy
    try:
        with opener.open(f"http://{ep.address}:{ep.port}{HEALTH_PATH}", timeout=timeout_s) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start(ep: Endpoint, out: Path, log: Path, lab_dir: Path) -> dict[str, Any]:
    """Start the receiver as its own session (it outlives `up`); its record for lab.json."""
    env = {**os.environ, MARKER_ENV: str(lab_dir)}
    cmd = [sys.executable, "-m", "fms_tools.lab.alert_receiver", "--bind", ep.address, "--port", str(ep.port)]
    proc = procs.start_detached([*cmd, "--out", str(out)], log, env)
    rec = {
        "url": ep.url,
        "pid": proc.pid,
        "pid_start": procs.start_time(proc.pid),
        "out": str(out),
        "log": str(log),
    }
    deadline = time.monotonic() + START_TIMEOUT_S
    while not answers(ep):
        if proc.poll() is not None:
            raise RuntimeError(f"the alert receiver exited with {proc.returncode}; see {log}")
        if time.monotonic() > deadline:
            procs.stop_group(proc, STOP_TIMEOUT_S)
            raise RuntimeError(f"the alert receiver did not answer on {ep.url} within {START_TIMEOUT_S:.0f}s")
        time.sleep(0.2)
    return rec


def alive(rec: dict[str, Any] | None) -> bool:
    return bool(rec) and bool(rec.get("pid")) and procs.start_time(rec["pid"]) == rec.get("pid_start")


def stop(rec: dict[str, Any] | None) -> None:
    if rec and alive(rec) and procs.terminate({rec["pid"]}, STOP_TIMEOUT_S):
        raise RuntimeError(f"the alert receiver (pid {rec['pid']}) survived SIGKILL")


def sweep(lab_dir: Path) -> set[int]:
    """Stop receivers this lab dir started that its state no longer records; returns them."""
    strays = procs.marked(MARKER_ENV, str(lab_dir))
    if strays and procs.terminate(strays, STOP_TIMEOUT_S):
        raise RuntimeError(f"alert receiver processes {sorted(strays)} survived SIGKILL")
    return strays


def ensure(lab: dict[str, Any], env_name: str) -> None:
    """Serve the receiver if this env's bridge carries its address (kept when already serving)."""
    ep = configured()
    held = {g.split("/")[0] for g in lab["envs"].get(env_name, {}).get("gateways", [])}
    if ep.address not in held:
        return
    rec = lab.get("alert_receiver")
    if alive(rec) and answers(ep):
        progress.step(f"alerts: receiver at {ep.url} (kept) -> {alerts_file()}")
        return
    stop(rec)
    sweep(state.lab_dir())  # one a failed run started and never recorded holds the port
    progress.step(f"alerts: receiver at {ep.url} -> {alerts_file()}")
    log = state.logs_dir() / "alert-receiver.log"
    try:
        lab["alert_receiver"] = start(ep, alerts_file(), log, state.lab_dir()) | {"env": env_name}
    except RuntimeError as exc:
        raise SystemExit(f"the lab's alert receiver did not start: {exc}") from exc
    state.save_lab(lab)


def release(lab: dict[str, Any], env_names: list[str] | None) -> None:
    """`down`: stop the receiver with the env that carries it (every env: any this lab left)."""
    rec = lab.get("alert_receiver")
    if env_names is not None and (not rec or rec.get("env") not in env_names):
        return
    if rec and alive(rec):
        progress.step(f"alerts: stopping the receiver at {rec['url']} (pid {rec['pid']})")
    stop(rec)
    lab.pop("alert_receiver", None)
    if env_names is None:
        sweep(state.lab_dir())


def status_line(lab: dict[str, Any]) -> str | None:
    """`status`: whether the receiver serves, what it received, and what is firing now."""
    rec = lab.get("alert_receiver")
    if not rec:
        return None
    serving = "running" if alive(rec) and answers(endpoint_of(rec["url"])) else "NOT running"
    notices = read(Path(rec["out"]))
    firing = firing_now(notices)
    names = ", ".join(sorted({f.get("alertname", "?") for f in firing})) or "none"
    return f"alerts:   {rec['url']} ({serving}); {len(notices)} received in {rec['out']}; firing now: {names}"


if __name__ == "__main__":
    raise SystemExit(main())
