"""Collector: FMS HTTP API poller or built-in simulator -> Kafka (confluent-kafka, idempotent, acks=all).

See :mod:`fms_jobs.collector.cli` for the command line and
:mod:`fms_jobs.collector.config` for the configuration file.
"""
