"""Pipeline benchmark: the highest sustained rate with flat consumer lag, e2e latency, Kafka's ceiling.

Two modes share one measurement loop:

* ``--mode loopback`` (self-contained, this machine): a single KRaft broker from the artifact
  mirror (fms_tools.fmsops.kafka_broker), the streaming job as its own process
  (``python -m fms_jobs.streaming --master local[2]``), and ``fms-collector`` simulator
  processes as load generators;
* ``--mode lab`` (``make bench``): the deployed lab. Without options everything comes from the
  running lab's state (the lab's hosts.json, for ``--lab-env``): the brokers' client
  listener (``<kafka host>:9092``), the stream driver's metrics (``http://<spark_master>:9311``),
  load generators run as root over the lab's ssh config on the collector hosts
  (``/opt/fms-jobs/venv/bin/fms-collector --config /etc/fms/collector.yml``: the deployed
  collector's Kafka settings and credentials), end offsets are read on the first collector host
  with the same credentials, and Kafka's perf tool runs on the first broker with
  ``/etc/kafka/admin.properties``. ``--bootstrap``, ``--stream-metrics-url``,
  ``--collector-exec`` and ``--kafka-exec`` override the derived values. When the metrics URL does
  not answer from this machine they are read on the stream's host over ssh (``--metrics-exec``).

Before the first rate the stream is warmed up: a priming load runs until it has completed
``--warm-batches`` micro-batches (the first batches of a fresh JVM are much slower), then drains.

For every rate (rising): start the load, wait ``--warmup`` seconds, then measure between two
micro-batch completions at least ``--window`` seconds (and ``--min-batches`` batches) apart, so
the consumed count covers whole batches: the produced rate from the topic's end offsets, the
consumed rate from ``fms_stream_records_in_total``, the consumer lag (end offsets minus the
stream's position) right after each batch completion, and the e2e latency percentiles from the
delta of the ``fms_stream_e2e_latency_seconds`` histogram over those batches (record creation at
the collector -> commit of the Parquet files holding it). A rate is *sustained* when the
generators delivered >= 90 % of the target, the stream consumed >= 95 % of what was produced and
the lag did not grow (slope <= max(50, 2 % of the rate) records/s), both within the measurement's
noise: the lag right after a batch is what arrived while it ran, so it swings by a batch's worth
of records when batch durations vary, and two standard errors of the lag's slope are allowed
(negligible with a few-second trigger; large with slow batches on a busy machine - look at
``lag_slope_se_per_s`` and widen ``--window``). Then the load stops and the stream drains
(loopback: end offsets == records in; lab: two batch completions, the last one not capped by
maxOffsetsPerTrigger). The run stops after the first rate that is not sustained (or when
``--max-minutes`` of rate steps are used up). Kafka's own ``kafka-producer-perf-test.sh`` with
the collector's producer settings gives the ceiling on the same broker(s).

Writes ``<out>/bench-<timestamp>.json`` and ``<out>/latency-vs-rate-<timestamp>.png`` and prints
one JSON line last: sustained_msgs_per_s, e2e_p50_ms, e2e_p95_ms, e2e_p99_ms,
kafka_ceiling_msgs_per_s (+ context). Every wait is bounded; only loopback/lab addresses are used.

Modules (one concern each):
  metrics       the stream driver's Prometheus metrics, histogram quantiles, slopes, end offsets
  environment   what a benchmark environment provides; the load generators' arguments
  loopback      --mode loopback: broker, stream and generators on this machine
  lab           --mode lab: the deployed lab, derived from its state
  loop          warm-up, one measured rate step, drain
  results       Step, the sustained-rate decision, Result and its summary
  plot          the PNG
  cli           the options and the run over rising rates (fms-bench, python -m fms_tools.bench)
"""
