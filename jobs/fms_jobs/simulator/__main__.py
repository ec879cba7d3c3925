"""Serve the fake FMS HTTP API: ``python -m fms_jobs.simulator --help``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from fms_jobs.quality.rulebook import load_rules
from fms_jobs.simulator.api import FakeFmsApi
from fms_jobs.simulator.fleet import FleetSimulator, SimulatorConfig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fms_jobs.simulator", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--devices", type=int, default=5)
    p.add_argument("--first-device-id", type=int, default=1)
    p.add_argument("--interval", type=float, default=10.0, help="seconds between readings of one device")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--bad-share", type=float, default=0.0)
    p.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered 500")
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every response")
    p.add_argument("--rules", default=None, help="quality rules file (for bad-record kinds)")
    a = p.parse_args(argv)
    cfg = SimulatorConfig(
        devices=a.devices,
        first_device_id=a.first_device_id,
        interval_s=a.interval,
        seed=a.seed,
        bad_share=a.bad_share,
    )
    api = FakeFmsApi(
        FleetSimulator(cfg, load_rules(a.rules)), a.host, a.port, error_rate=a.error_rate, latency_s=a.latency
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    api.start()
    print(f"fake FMS API on {api.url} ({a.devices} devices)", file=sys.stderr, flush=True)
    while not stop.wait(1.0):
        pass
    api.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
