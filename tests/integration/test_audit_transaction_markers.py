"""The conservation audit on a topic written with transactions (a DR standby's raw topic, which
MirrorMaker 2 writes with exactly-once source support): each commit or abort leaves a marker that
takes an offset and is no record. A real broker and a real transactional producer; the audit's own
Kafka reader (``kafka_markers``) must count exactly the offsets without a record - and count the
records of an aborted transaction as records, because the stream (read_uncommitted) stores them.
"""

from __future__ import annotations

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from fms_jobs.batch import audit
from support import kafka_broker as kb

pytestmark = [pytest.mark.slow]

TOPIC = "it.transactional.raw"
COMMITTED = [3, 3, 3, 1]  # records per committed transaction
ABORTED = [2]  # records per aborted transaction


def test_kafka_markers_counts_the_offsets_without_a_record(tmp_path) -> None:
    kb.require_java()
    with kb.KafkaBroker(tmp_path) as broker:
        conf = {"bootstrap.servers": broker.bootstrap}
        admin = AdminClient(conf)  # kept: the future fails if its client is collected first
        admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)])[TOPIC].result(60)
        producer = Producer({**conf, "transactional.id": "it-mirror", "enable.idempotence": True})
        producer.init_transactions(60)
        n = 0
        for count, commit in (
            [(c, True) for c in COMMITTED[:2]]
            + [(c, False) for c in ABORTED]
            + [(c, True) for c in COMMITTED[2:]]
        ):
            producer.begin_transaction()
            for _ in range(count):
                producer.produce(TOPIC, key=str(n).encode(), value=b"{}", partition=0)
                n += 1
            if commit:
                producer.commit_transaction(60)
            else:
                producer.flush(60)  # the records reach the log first: an abort would purge unsent ones
                producer.abort_transaction(60)

        del producer  # destroyed while its broker still answers: no minute of reconnecting at exit
        ranges = audit.kafka_ranges(conf, TOPIC, 60)
        markers = audit.kafka_markers(conf, TOPIC, ranges, [0], 60)

    transactions = len(COMMITTED) + len(ABORTED)
    records = sum(COMMITTED) + sum(ABORTED)
    assert ranges[0].size == records + transactions, ranges
    assert markers == {0: transactions}, (markers, ranges)
