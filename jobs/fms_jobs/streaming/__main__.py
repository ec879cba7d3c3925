"""Run the streaming job: ``python -m fms_jobs.streaming --config /etc/fms/stream.yml``.

Deployed with spark-submit (the Kafka connector jars are installed into Spark by
the spark role); ``--local-jars`` finds them in the artifact mirror instead, for
local runs. SIGTERM stops the query between micro-batches' commits; a restart
resumes exactly where the checkpoint says.

Exit status: 0 stopped on request, 1 configuration error (restarting cannot help:
the unit's RestartPreventExitStatus), 2 any failure at run time - a failed query
(e.g. HDFS or Kafka unreachable for longer than the retries), an unreachable Spark
master - so that systemd restarts the job.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable

from fms_jobs.quality.rulebook import QualityRules, RulesError, load_rules
from fms_jobs.streaming.config import StreamConfig, StreamConfigError, load_stream_config


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fms_jobs.streaming", description=__doc__)
    p.add_argument("--config")
    p.add_argument("--bootstrap-servers", dest="kafka.bootstrap_servers")
    p.add_argument("--topic", dest="kafka.topic")
    p.add_argument("--dlq-topic", dest="kafka.dlq_topic")
    p.add_argument("--processed", dest="paths.processed")
    p.add_argument("--dlq", dest="paths.dlq")
    p.add_argument("--checkpoint", dest="paths.checkpoint")
    p.add_argument("--trigger", dest="trigger.processing_time", help='e.g. "2 seconds"')
    p.add_argument("--available-now", action="store_true", default=None, dest="trigger.available_now")
    p.add_argument("--metrics-port", type=int, dest="metrics.port")
    p.add_argument("--rules", dest="rules_path")
    p.add_argument("--master", dest="master")
    p.add_argument(
        "--local-jars", action="store_true", help="add the Kafka connector jars from the local mirror"
    )
    p.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark setting (repeatable)"
    )
    p.add_argument("--max-offsets-per-trigger", type=int, dest="kafka.max_offsets_per_trigger")
    p.add_argument(
        "--stall-restart-seconds",
        type=int,
        dest="stall_restart_seconds",
        help="exit 2 (systemd restarts the job) after this long without micro-batch progress; 0 disables",
    )
    a = p.parse_args(argv)
    overrides = {
        k: v for k, v in vars(a).items() if k not in ("config", "local_jars", "conf") and v is not None
    }
    try:
        cfg = load_stream_config(a.config, overrides)
        rules = load_rules(cfg.rules_path)
    except (StreamConfigError, RulesError) as e:
        print(f"fms-stream: configuration error: {e}", file=sys.stderr)
        return 1
    for item in a.conf:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"fms-stream: --conf expects KEY=VALUE, got {item!r}", file=sys.stderr)
            return 1
        cfg.spark_conf[key] = value
    logging.basicConfig(level=cfg.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run(cfg, rules, a.local_jars)
    except Exception:
        # Not a configuration error: exit 2 so that the unit restarts the job.
        logging.getLogger("fms_jobs.streaming").exception("fms-stream failed at run time")
        return 2


def run(cfg: StreamConfig, rules: QualityRules, local_jars: bool = False) -> int:
    """Start the query and wait for SIGTERM/SIGINT or its end: 0 when stopped, 2 when it failed."""
    from fms_jobs.sparkutil.jars import KAFKA_CONNECTOR, find_jars
    from fms_jobs.sparkutil.session import build_session
    from fms_jobs.streaming.job import BatchProcessor, progress_listener, start_query
    from fms_jobs.streaming.metrics import StreamMetrics
    from fms_jobs.streaming.watchdog import StallWatchdog

    jars = find_jars(KAFKA_CONNECTOR) if local_jars else []
    spark = build_session(cfg.app_name, cfg.master, cfg.spark_conf, jars)
    metrics = StreamMetrics(per_device=cfg.metrics.per_device)
    metrics.serve(cfg.metrics.port, cfg.metrics.addr)
    watchdog = StallWatchdog(cfg.stall_restart_seconds)
    spark.streams.addListener(progress_listener(metrics, watchdog))
    query, _ = start_query(spark, cfg, rules, BatchProcessor(spark, cfg, rules, metrics))
    stopping = threading.Event()

    def stop(*_: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    stalled = None
    try:
        while query.isActive and not stopping.is_set() and stalled is None:
            query.awaitTermination(1.0)
            stalled = watchdog.stalled()
    except Exception:  # awaitTermination re-raises the query's failure; query.exception() reports it
        pass
    if stalled is not None:
        log = logging.getLogger("fms_jobs.streaming")
        log.error("stall watchdog: %s; query status: %s", stalled, query.status)
        print(f"fms-stream: {stalled}", file=sys.stderr)
        # a stuck batch may keep stop() waiting: give it a bounded time, then exit regardless
        finished = call_within(lambda: (query.stop(), spark.stop()), STOP_AFTER_STALL_S)
        if not finished:
            log.error("the stuck query did not stop within %d s; exiting anyway", STOP_AFTER_STALL_S)
        return 2
    if query.isActive:
        query.stop()
    exc = query.exception()
    spark.stop()
    if exc is not None:
        print(f"fms-stream: query failed: {exc}", file=sys.stderr)
        return 2
    return 0


STOP_AFTER_STALL_S = 60


def call_within(fn: Callable[[], object], timeout_s: float) -> bool:
    """Run fn in a daemon thread; True when it returned within timeout_s (a hung call is abandoned)."""
    t = threading.Thread(target=fn, name="fms-stop", daemon=True)
    t.start()
    t.join(timeout_s)
    return not t.is_alive()


if __name__ == "__main__":
    sys.exit(main())
