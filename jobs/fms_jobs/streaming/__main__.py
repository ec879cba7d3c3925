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

from fms_jobs.config import QualityRules, RulesError, load_rules
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

    jars = find_jars(KAFKA_CONNECTOR) if local_jars else []
    spark = build_session(cfg.app_name, cfg.master, cfg.spark_conf, jars)
    metrics = StreamMetrics(per_device=cfg.metrics.per_device)
    metrics.serve(cfg.metrics.port, cfg.metrics.addr)
    spark.streams.addListener(progress_listener(metrics))
    query, _ = start_query(spark, cfg, rules, BatchProcessor(spark, cfg, rules, metrics))
    stopping = threading.Event()

    def stop(*_: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while query.isActive and not stopping.is_set():
            query.awaitTermination(1.0)
    except Exception:  # awaitTermination re-raises the query's failure; query.exception() reports it
        pass
    if query.isActive:
        query.stop()
    exc = query.exception()
    spark.stop()
    if exc is not None:
        print(f"fms-stream: query failed: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
