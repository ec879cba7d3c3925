"""``fms-collector``: FMS API poller / device simulator -> Kafka ``fms.sensor.raw``.

Examples::

    fms-collector --config /etc/fms/collector.yml
    fms-collector --source simulator --devices 1000 --rate 5000 --bootstrap-servers 127.0.0.1:9092
    fms-collector --source http --api-url http://127.0.0.1:8080 --devices-spec 1-100 --interval 10

Exit status: 0 when every record was acknowledged, 1 on a configuration
error (the unit does not restart it), 2 when records failed or were still
pending at shutdown, or on any failure at run time (the unit restarts it).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from dataclasses import asdict

from fms_jobs.collector.app import Collector
from fms_jobs.collector.config import ConfigError, load_config
from fms_jobs.collector.producer import producer_config, redacted


def parse_bad_kinds(text: str) -> dict[str, float]:
    """``"out_of_range"`` or ``"duplicate=2,late_event=1"`` -> {kind: weight}; the config checks the names."""
    kinds: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, weight = item.partition("=")
        try:
            kinds[name.strip()] = float(weight) if weight else 1.0
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad weight in {item!r}: expected KIND=NUMBER") from None
    if not kinds:
        raise argparse.ArgumentTypeError("give at least one kind")
    return kinds


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fms-collector", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", help="YAML configuration file")
    p.add_argument("--source", choices=["http", "simulator"])
    p.add_argument("--bootstrap-servers", dest="kafka.bootstrap_servers")
    p.add_argument("--topic", dest="kafka.topic")
    p.add_argument("--security-protocol", dest="kafka.security_protocol")
    p.add_argument("--compression", dest="kafka.compression")
    p.add_argument("--metrics-port", type=int, dest="metrics.port")
    p.add_argument("--api-url", dest="http.base_url")
    p.add_argument(
        "--devices-spec", dest="http.devices", help='device ids to poll: "1-1000", "1,5,9" or "discover"'
    )
    p.add_argument("--interval", type=float, dest="http.interval_s", help="seconds between polls of a device")
    p.add_argument("--devices", type=int, dest="simulator.devices", help="simulated devices")
    p.add_argument("--first-device-id", type=int, dest="simulator.first_device_id")
    p.add_argument("--rate", type=float, dest="simulator.rate", help="simulated records per second")
    p.add_argument("--seed", type=int, dest="simulator.seed")
    p.add_argument("--bad-share", type=float, dest="simulator.bad_share")
    p.add_argument(
        "--bad-kinds",
        type=parse_bad_kinds,
        dest="simulator.bad_kinds",
        metavar="KIND[=WEIGHT],...",
        help="inject only these bad-record kinds (e.g. out_of_range or duplicate=2,late_event=1)",
    )
    p.add_argument(
        "--clock-offset-seconds",
        type=float,
        dest="simulator.clock_offset_s",
        help="simulated devices' clock runs this far ahead of the host's (wrong-clock drill)",
    )
    p.add_argument("--duration", type=float, dest="duration_s", help="stop after this many seconds")
    p.add_argument("--max-records", type=int, dest="max_records")
    p.add_argument("--rules", dest="rules_path", help="quality rules file (simulator bad kinds)")
    p.add_argument("--log-level", dest="log_level")
    p.add_argument("--print-config", action="store_true", help="print the effective configuration and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k not in ("config", "print_config") and v is not None}
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as e:
        print(f"fms-collector: configuration error: {e}", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=getattr(logging, str(cfg.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.print_config:
        doc = asdict(cfg)
        doc["kafka"]["sasl_password"] = "***" if cfg.kafka.sasl_password else None
        doc["librdkafka"] = redacted(producer_config(cfg.kafka))
        print(json.dumps(doc, indent=2, default=str))
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    collector = Collector(cfg)
    try:
        collector.metrics.serve(cfg.metrics.port, cfg.metrics.addr)
        summary = collector.run(stop)
    except Exception:
        # Not a configuration error: exit 2 so that the unit restarts the collector.
        logging.getLogger("fms_jobs.collector").exception("fms-collector failed at run time")
        return 2
    return 0 if summary.ok else 2


if __name__ == "__main__":
    sys.exit(main())
