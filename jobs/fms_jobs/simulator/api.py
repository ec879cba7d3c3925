"""A fake FMS HTTP API on loopback, backed by the fleet simulator.

Routes::

    GET /health                 -> 200 {"status": "ok"}
    GET /devices                -> 200 {"devices": [1, 2, ...]}
    GET /devices/{id}/latest    -> 200 <the device's latest raw reading, bytes as the device sent them>
                                   404 unknown device
    POST /devices/{id}/maintenance -> 202 {"device": id, "repaired": bool} (a planned repair now)
                                   404 unknown device

Faults for exercising the collector's retries and circuit breaker: a share of
requests answered 500 (``error_rate``), added latency, and an outage switch
that answers 503 to everything.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fms_jobs.simulator.fleet import FleetSimulator

_LATEST = re.compile(r"^/devices/(-?\d+)/latest/?$")
_MAINTENANCE = re.compile(r"^/devices/(-?\d+)/maintenance/?$")


class FakeFmsApi:
    def __init__(
        self,
        fleet: FleetSimulator,
        host: str = "127.0.0.1",
        port: int = 0,
        error_rate: float = 0.0,
        latency_s: float = 0.0,
        seed: int = 7,
    ) -> None:
        self.fleet = fleet
        self.error_rate = error_rate
        self.latency_s = latency_s
        self.outage = False
        self.requests = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                with api._lock:
                    api.requests += 1
                    fail = api.error_rate > 0 and api._rng.random() < api.error_rate
                if api.latency_s > 0:
                    time.sleep(api.latency_s)
                if api.outage:
                    self._send(503, b'{"error":"maintenance"}')
                    return
                if self.path == "/health":
                    self._send(200, b'{"status":"ok"}')
                    return
                if fail:
                    self._send(500, b'{"error":"injected"}')
                    return
                if self.path.rstrip("/") == "/devices":
                    ids = [d.device_id for d in api.fleet.devices]
                    self._send(200, json.dumps({"devices": ids}).encode())
                    return
                m = _LATEST.match(self.path)
                if not m:
                    self._send(404, b'{"error":"not found"}')
                    return
                rec = api.fleet.latest(int(m.group(1)))
                if rec is None:
                    self._send(404, b'{"error":"unknown device"}')
                    return
                self._send(200, rec.value)

            def do_POST(self) -> None:
                with api._lock:
                    api.requests += 1
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                if api.outage:
                    self._send(503, b'{"error":"maintenance"}')
                    return
                m = _MAINTENANCE.match(self.path)
                if not m:
                    self._send(404, b'{"error":"not found"}')
                    return
                dev_id = int(m.group(1))
                repaired = api.fleet.request_maintenance(dev_id)
                if repaired is None:
                    self._send(404, b'{"error":"unknown device"}')
                    return
                self._send(202, json.dumps({"device": dev_id, "repaired": repaired}).encode())

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeFmsApi:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-fms-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeFmsApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
