"""Conservation audit: every record of the raw topic is exactly one of stored / dead-lettered.

::

    python -m fms_jobs.batch.audit --config /etc/fms/stream.yml [--wait-seconds 300]
    spark-submit ... fms_spark_main.py fms_jobs.batch.audit --config /etc/fms/stream.yml

For each partition of ``kafka.topic`` the audit reads Kafka's low and high
watermarks, then counts with Spark what the lake holds for the offsets in
``[low, high)``: rows of ``paths.processed`` (stored) and of ``paths.dlq`` (dead
letters; ``reason = DUPLICATE`` is a counted duplicate, any other reason a dead
letter). The lake *conserves* the topic when every offset of the range is there
exactly once::

    records_in = sum(high - low) = stored + dead_lettered + duplicates
    missing = 0, double_counted = 0, no row beyond a high watermark or of an unknown partition

Rows below a low watermark (retention already removed the record from Kafka) are
reported as ``expired``, not as an error. It prints one JSON object on stdout and
exits 0 when conserved, 2 when not, 1 on a configuration error (bad arguments,
stream config or rules, unknown topic, unreachable brokers).

Which files count. The streaming job does not use Spark's file sink, so there is
no ``_spark_metadata`` log and ``spark.read.parquet(directory)`` would also read
the files of a micro-batch that was published but not committed yet (a crashed
attempt that the restart will replace). The audit lists the files itself, like
the hourly job does (:func:`fms_jobs.lake.committed_files`): a batch file
``part-<batch>-<n>.snappy.parquet`` counts only when the streaming query's commit
log (``paths.checkpoint``/commits) holds its batch; files under ``_staging``,
``_manifests``, ``_compact`` etc. never count; a compaction of the hourly job
that was interrupted half-way is resolved the way its recovery will resolve it
(its outputs count instead of its inputs once all outputs exist). The commit log
is read *before* the watermarks, so every counted batch read offsets below the
high watermarks.

Offsets that hold no record. The primary's raw topic is written by idempotent,
non-transactional producers, so its offsets are contiguous. A standby's copy is
written by MirrorMaker 2 with exactly-once source support: every transaction ends
with a commit marker that takes an offset and is never a record (the first DR
failover drill counted 49,892 such offsets of 221,156 as ``missing``). When
offsets below the stream's committed end are missing, the audit reads those
partitions from Kafka the way the stream does (read_uncommitted: a record of an
aborted transaction is delivered, and stored, like any other) and counts the
offsets without a record as ``markers``: they leave ``records_in`` and
``missing``. ``missing`` also counts the records the stream has not committed
yet; ``not_yet_processed`` says how many of them lie past the query's last
committed end offsets. ``--wait-seconds N`` re-checks every ``--interval``
seconds until the lake conserves the topic or N seconds passed - useful right
after stopping the producers while the stream drains.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from fms_jobs.lake import COMPACTIONS, batch_of, last_committed_batch
from fms_jobs.quality.reasons import ReasonCode

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from fms_jobs.sparkutil.hadoopfs import FileInfo, HadoopFS
    from fms_jobs.streaming.config import StreamConfig

log = logging.getLogger(__name__)

EXIT_CONSERVED = 0
EXIT_CONFIG = 1
EXIT_NOT_CONSERVED = 2
DUPLICATE = ReasonCode.DUPLICATE.value
EXAMPLES = 10
DEFAULT_CONFIG = "/etc/fms/stream.yml"
# The audit reads as the stream's Kafka user (spark), whose group ACLs are prefixed:
# platform.yml topics.raw.consumer_groups (tests/static/test_platform_contract.py).
AUDIT_GROUP_ID = "fms-audit"


class AuditError(RuntimeError):
    """Configuration or connectivity problem: the audit cannot run (exit 1)."""


# --------------------------------------------------------------------------- pure parts


@dataclass(frozen=True)
class OffsetRange:
    low: int
    high: int

    @property
    def size(self) -> int:
        return max(0, self.high - self.low)


@dataclass
class PartitionFigures:
    """What the lake holds for one Kafka partition (counted by Spark, see :func:`lake_figures`)."""

    stored: int = 0  # rows in [low, high)
    dead_lettered: int = 0
    duplicates: int = 0
    distinct: int = 0  # distinct offsets in [low, high)
    surplus: int = 0  # rows beyond the first one per offset, wherever the offset lies
    expired: int = 0  # rows below low
    beyond_high: int = 0  # rows at or above high
    unknown: int = 0  # rows of a partition the topic does not have
    first: int | None = None  # smallest / largest offset found in [low, high)
    last: int | None = None

    @property
    def lake(self) -> int:
        return self.stored + self.dead_lettered + self.duplicates


@dataclass(frozen=True)
class Gap:
    """Offsets ``first..last`` (inclusive) of a partition that the lake does not hold."""

    partition: int
    first: int
    last: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1


@dataclass
class LakeSelection:
    files: list[str] = field(default_factory=list)
    uncommitted: list[str] = field(default_factory=list)  # batches the query has not committed
    compaction_excluded: list[str] = field(default_factory=list)  # superseded by an interrupted compaction


@dataclass
class AuditResult:
    topic: str
    ranges: dict[int, OffsetRange]
    figures: dict[int, PartitionFigures]
    committed_end: dict[int, int] | None = None  # the stream's last committed end offsets
    markers: dict[int, int] = field(default_factory=dict)  # offsets of [low, high) holding no record
    gaps: list[Gap] = field(default_factory=list)  # first missing ranges (at most EXAMPLES)
    double_examples: list[dict[str, int]] = field(default_factory=list)
    lake_files: dict[str, Any] = field(default_factory=dict)
    attempts: int = 1
    elapsed_seconds: float = 0.0

    # ------------------------------------------------------------------ totals
    def _sum(self, name: str) -> int:
        return sum(int(getattr(f, name)) for f in self.figures.values())

    def records_in_range(self, p: int) -> int:
        """Records Kafka holds in the partition's [low, high): offsets less transaction markers."""
        return self.ranges[p].size - self.markers.get(p, 0)

    @property
    def records_in(self) -> int:
        return sum(self.records_in_range(p) for p in self.ranges)

    @property
    def stored(self) -> int:
        return sum(self.figures[p].stored for p in self.ranges if p in self.figures)

    @property
    def dead_lettered(self) -> int:
        return sum(self.figures[p].dead_lettered for p in self.ranges if p in self.figures)

    @property
    def duplicates(self) -> int:
        return sum(self.figures[p].duplicates for p in self.ranges if p in self.figures)

    def missing_in(self, p: int) -> int:
        f = self.figures.get(p)
        return self.records_in_range(p) - (f.distinct if f else 0)

    def missing_below_committed_in(self, p: int) -> int:
        """Missing offsets the stream has already read: records lost, or offsets without a record."""
        return self.missing_in(p) - self.not_yet_processed_in(p)

    @property
    def missing(self) -> int:
        return sum(self.missing_in(p) for p in self.ranges)

    def not_yet_processed_in(self, p: int) -> int:
        """Missing offsets at or past the stream's last committed end offset of the partition."""
        if self.committed_end is None:  # the checkpoint's offset log could not be read
            return 0
        r = self.ranges[p]
        end = self.committed_end.get(p, r.low)  # a partition the query has not read yet: from low
        return min(self.missing_in(p), max(0, r.high - max(r.low, end)))

    @property
    def not_yet_processed(self) -> int:
        return sum(self.not_yet_processed_in(p) for p in self.ranges)

    @property
    def double_counted(self) -> int:
        return self._sum("surplus")

    @property
    def expired(self) -> int:
        return self._sum("expired")

    @property
    def beyond_high(self) -> int:
        return self._sum("beyond_high")

    @property
    def unknown_partition_rows(self) -> int:
        return self._sum("unknown")

    @property
    def balance(self) -> int:
        """records_in - (stored + dead_lettered + duplicates): 0 when the books balance."""
        return self.records_in - (self.stored + self.dead_lettered + self.duplicates)

    @property
    def problems(self) -> list[str]:
        out: list[str] = []
        if self.missing:
            out.append(
                f"{self.missing} offsets of Kafka's [low, high) are neither stored nor dead-lettered"
                f" ({self.not_yet_processed} of them past the stream's last committed offsets)"
            )
        if self.double_counted:
            out.append(f"{self.double_counted} rows repeat a (partition, offset) already in the lake")
        if self.beyond_high:
            out.append(
                f"{self.beyond_high} rows have offsets at or above Kafka's high watermark"
                " (a recreated topic, or the lake of another cluster?)"
            )
        if self.unknown_partition_rows:
            out.append(f"{self.unknown_partition_rows} rows belong to partitions the topic does not have")
        if self.balance and not out:
            out.append(f"records_in - (stored + dead_lettered + duplicates) = {self.balance}")
        return out

    @property
    def conserved(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        partitions: dict[str, Any] = {}
        for p in sorted(set(self.ranges) | set(self.figures)):
            f = self.figures.get(p, PartitionFigures())
            r = self.ranges.get(p)
            entry: dict[str, Any] = {
                "low": r.low if r else None,
                "high": r.high if r else None,
                "lake": f.lake if r else 0,
                "stored": f.stored,
                "dead_lettered": f.dead_lettered,
                "duplicates": f.duplicates,
                "missing": self.missing_in(p) if r else 0,
                "double_counted": f.surplus,
                "expired": f.expired,
            }
            if r and self.committed_end is not None:
                entry["committed_end"] = self.committed_end.get(p)
            if self.markers.get(p):
                entry["markers"] = self.markers[p]
            if f.beyond_high:
                entry["beyond_high"] = f.beyond_high
            if f.unknown:
                entry["unknown_partition_rows"] = f.unknown
            partitions[str(p)] = entry
        return {
            "topic": self.topic,
            "conserved": self.conserved,
            "records_in": self.records_in,
            "stored": self.stored,
            "dead_lettered": self.dead_lettered,
            "duplicates": self.duplicates,
            "missing": self.missing,
            "not_yet_processed": self.not_yet_processed,
            "transaction_markers": sum(self.markers.values()),
            "double_counted": self.double_counted,
            "expired": self.expired,
            "beyond_high": self.beyond_high,
            "unknown_partition_rows": self.unknown_partition_rows,
            "problems": self.problems,
            "partitions": partitions,
            "missing_ranges": [
                {"partition": g.partition, "from": g.first, "to": g.last, "count": g.count} for g in self.gaps
            ],
            "missing_examples": missing_examples(self.gaps),
            "double_counted_examples": self.double_examples,
            "lake_files": self.lake_files,
            "attempts": self.attempts,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
        }


def exit_code(result: AuditResult) -> int:
    return EXIT_CONSERVED if result.conserved else EXIT_NOT_CONSERVED


def edge_gaps(ranges: Mapping[int, OffsetRange], figures: Mapping[int, PartitionFigures]) -> list[Gap]:
    """Missing offsets before the first and after the last offset the lake holds, per partition."""
    out: list[Gap] = []
    for p, r in sorted(ranges.items()):
        if not r.size:
            continue
        f = figures.get(p)
        if f is None or f.first is None or f.last is None:
            out.append(Gap(p, r.low, r.high - 1))
            continue
        if f.first > r.low:
            out.append(Gap(p, r.low, f.first - 1))
        if f.last < r.high - 1:
            out.append(Gap(p, f.last + 1, r.high - 1))
    return out


def first_gaps(gaps: Iterable[Gap], limit: int = EXAMPLES) -> list[Gap]:
    return sorted(gaps, key=lambda g: (g.partition, g.first))[:limit]


def missing_examples(gaps: Iterable[Gap], limit: int = EXAMPLES) -> list[dict[str, int]]:
    """Up to ``limit`` single missing offsets, in (partition, offset) order."""
    out: list[dict[str, int]] = []
    for g in first_gaps(gaps, limit):
        for o in range(g.first, min(g.last, g.first + limit) + 1):
            if len(out) == limit:
                return out
            out.append({"partition": g.partition, "offset": o})
    return out


def committed_end_offsets(offset_log: str | None, topic: str) -> dict[int, int] | None:
    """End offsets of ``topic`` from a streaming query offset-log entry (``offsets/<batch>``).

    The entry is ``v1``, the batch metadata, then one JSON line per source; the Kafka
    source's line is ``{"<topic>": {"<partition>": <offset>, ...}}``.
    """
    if not offset_log:
        return None
    for line in offset_log.splitlines()[2:]:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get(topic), dict):
            return {int(p): int(o) for p, o in doc[topic].items()}
    return None


def _hidden(relative: str) -> bool:
    """Staging, manifests, compaction scratch space, hidden files: never part of the dataset."""
    return any(part.startswith(("_", ".")) for part in relative.split("/"))


def select_files(
    paths: Iterable[str],
    root: str,
    last_batch: int,
    compactions: Iterable[Mapping[str, Any]] = (),
) -> LakeSelection:
    """The Parquet files under ``root`` whose rows count (see the module documentation).

    ``paths`` and the paths in ``compactions`` must be spelt alike (qualified by the caller).
    """
    base = root.rstrip("/") + "/"
    listed: list[str] = []
    for p in paths:
        rel = p[len(base) :] if p.startswith(base) else p.rsplit("/", 1)[-1]
        if p.endswith(".parquet") and not _hidden(rel):
            listed.append(p)
    present = set(listed)
    superseded: set[str] = set()
    for doc in compactions:
        if doc.get("state") == "done":
            continue
        outputs = [str(o) for o in doc.get("outputs", [])]
        inputs = [str(i) for i in doc.get("inputs", [])]
        # HourlySummaryJob.recover: all outputs in place -> roll forward (inputs go), else roll back
        superseded.update(inputs if outputs and all(o in present for o in outputs) else outputs)
    sel = LakeSelection()
    for p in sorted(listed):
        b = batch_of(p)
        if p in superseded:
            sel.compaction_excluded.append(p)
        elif b is not None and b > last_batch:
            sel.uncommitted.append(p)
        else:
            sel.files.append(p)
    return sel


def audit_until(
    check: Callable[[], AuditResult],
    wait_seconds: float = 0.0,
    interval: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> AuditResult:
    """Run ``check`` until it reports conservation or ``wait_seconds`` passed (at least once).

    While time is left, an attempt that fails with anything but :class:`AuditError` (a file
    that an hourly compaction removed under the reader, say) is logged and retried.
    """
    start = clock()
    deadline = start + max(0.0, wait_seconds)
    attempts = 0
    while True:
        attempts += 1
        try:
            result = check()
        except AuditError:
            raise
        except Exception:
            if clock() + interval > deadline:
                raise
            log.warning("audit attempt %d failed; retrying in %.0fs", attempts, interval, exc_info=True)
            sleep(interval)
            continue
        result.attempts = attempts
        result.elapsed_seconds = clock() - start
        if result.conserved or clock() + interval > deadline:
            return result
        log.info(
            "not conserved yet (missing=%d, not yet processed=%d, double counted=%d); re-checking in %.0fs",
            result.missing,
            result.not_yet_processed,
            result.double_counted,
            interval,
        )
        sleep(interval)


# --------------------------------------------------------------------------- arguments


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error; 2 means "not conserved" here, so usage errors exit 1."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_CONFIG, f"{self.prog}: error: {message}\n")


def _non_negative(text: str) -> float:
    v = float(text)
    if v < 0:
        raise ValueError(text)
    return v


def _positive(text: str) -> float:
    v = float(text)
    if v <= 0:
        raise ValueError(text)
    return v


_non_negative.__name__ = "non-negative number"
_positive.__name__ = "positive number"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m fms_jobs.batch.audit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        help=f"the streaming job's configuration (default {DEFAULT_CONFIG})",
    )
    p.add_argument("--master", help="Spark master (default: spark-submit's, else the config's, else local)")
    p.add_argument(
        "--wait-seconds",
        type=_non_negative,
        default=0.0,
        help="re-check until conserved or this many seconds passed (default 0: check once)",
    )
    p.add_argument("--interval", type=_positive, default=5.0, help="seconds between checks (default 5)")
    p.add_argument(
        "--kafka-timeout", type=_positive, default=30.0, help="seconds per Kafka request (default 30)"
    )
    p.add_argument(
        "--kafka-conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra librdkafka setting for the watermark client (repeatable)",
    )
    p.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark setting (repeatable)"
    )
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = build_parser()
    a = p.parse_args(argv)
    for name in ("kafka_conf", "conf"):
        pairs: dict[str, str] = {}
        for item in getattr(a, name):
            key, sep, value = item.partition("=")
            if not sep or not key:
                p.error(f"--{name.replace('_', '-')} expects KEY=VALUE, got {item!r}")
            pairs[key] = value
        setattr(a, name, pairs)
    return a


def check_config(cfg: StreamConfig, duplicates_dead_letter_copy: bool) -> None:
    if cfg.source != "kafka":
        raise AuditError(f"source is {cfg.source!r}: the audit checks a Kafka topic (source: kafka)")
    if not duplicates_dead_letter_copy:
        raise AuditError(
            "the quality rules set duplicates.dead_letter_copy: false - duplicates leave no row in the "
            "lake, so conservation cannot be proven from it"
        )


# --------------------------------------------------------------------------- Kafka


def kafka_ranges(conf: Mapping[str, Any], topic: str, timeout: float) -> dict[int, OffsetRange]:
    """Low and high watermark of every partition of ``topic``."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    try:
        # never subscribes or commits: the group id is only required by the client
        c = Consumer({**conf, "group.id": AUDIT_GROUP_ID, "enable.auto.commit": False})
    except KafkaException as e:
        raise AuditError(f"kafka client: {e}") from None
    try:
        meta = c.list_topics(topic, timeout=timeout)
        t = meta.topics.get(topic)
        if t is None or t.error is not None:
            raise AuditError(f"kafka topic {topic!r}: {t.error if t is not None else 'not found'}")
        if not t.partitions:
            raise AuditError(f"kafka topic {topic!r} has no partitions")
        out: dict[int, OffsetRange] = {}
        for p in sorted(t.partitions):
            marks = c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout, cached=False)
            if marks is None:
                raise AuditError(f"kafka {topic}[{p}]: no watermarks within {timeout:.0f}s")
            out[p] = OffsetRange(int(marks[0]), int(marks[1]))
        return out
    except KafkaException as e:
        raise AuditError(f"kafka {conf.get('bootstrap.servers')}: {e}") from None
    finally:
        c.close()


def kafka_markers(
    conf: Mapping[str, Any],
    topic: str,
    ranges: Mapping[int, OffsetRange],
    partitions: Iterable[int],
    timeout: float,
    batch: int = 10_000,
) -> dict[int, int]:
    """Per partition, the offsets of [low, high) that hold no record (transaction markers).

    Reads each partition from ``low`` to ``high`` the way the stream reads it (read_uncommitted;
    librdkafka's default is read_committed, which would also hide aborted records the stream stores).
    """
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    c = Consumer(
        {
            **conf,
            "group.id": AUDIT_GROUP_ID,
            "enable.auto.commit": False,
            "isolation.level": "read_uncommitted",
            "enable.partition.eof": True,
        }
    )
    out: dict[int, int] = {}
    try:
        for p in partitions:
            r = ranges[p]
            records, done = 0, r.size == 0
            c.assign([TopicPartition(topic, p, r.low)])
            quiet_since = time.monotonic()
            while not done:
                # consume() waits for a full batch or its timeout: short polls, the bound is `timeout`
                msgs = c.consume(num_messages=batch, timeout=0.5)
                if not msgs:
                    if time.monotonic() - quiet_since > timeout:
                        raise AuditError(f"kafka {topic}[{p}]: nothing read in {timeout:.0f}s below {r.high}")
                    continue
                quiet_since = time.monotonic()
                for m in msgs:
                    err = m.error()
                    if err is not None and err.code() == KafkaError._PARTITION_EOF:
                        done = True
                        break
                    if err is not None:
                        raise AuditError(f"kafka {topic}[{p}]: {err}")
                    if m.offset() >= r.high:
                        done = True
                        break
                    records += 1
            out[p] = r.size - records
            c.unassign()
    except KafkaException as e:
        raise AuditError(f"kafka {conf.get('bootstrap.servers')}: {e}") from None
    finally:
        c.close()
    return out


# --------------------------------------------------------------------------- lake (Spark)


def _compaction_manifests(fs: HadoopFS, root: str) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for f in fs.ls(f"{root}/{COMPACTIONS}"):
        if f.is_dir or not f.path.endswith(".json"):
            continue
        text = fs.read_text(f.path)
        if not text:
            continue
        doc = json.loads(text)
        doc["inputs"] = [fs.qualify(p) for p in doc.get("inputs", [])]
        doc["outputs"] = [fs.qualify(p) for p in doc.get("outputs", [])]
        docs.append(doc)
    return docs


def list_lake(fs: HadoopFS, root: str, last_batch: int) -> LakeSelection:
    root = root.rstrip("/")
    listing: list[FileInfo] = fs.files(root)
    return select_files(
        [f.path for f in listing], fs.qualify(root), last_batch, _compaction_manifests(fs, root)
    )


def read_rows(spark: SparkSession, files: Sequence[str], root: str, dead_letters: bool) -> DataFrame:
    """(p, o, stored, dead, dup) per row of the given files: 1/0 flags, no other column is read."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    fields = [T.StructField("kafka_partition", T.IntegerType()), T.StructField("kafka_offset", T.LongType())]
    if dead_letters:
        fields.append(T.StructField("reason", T.StringType()))
    schema = T.StructType(fields)
    if files:
        df = spark.read.schema(schema).option("basePath", root).parquet(*files)
    else:
        df = spark.createDataFrame([], schema)
    one, zero = F.lit(1), F.lit(0)
    if dead_letters:
        is_dup = F.coalesce(F.col("reason") == F.lit(DUPLICATE), F.lit(False))
        stored, dead, dup = zero, F.when(is_dup, zero).otherwise(one), F.when(is_dup, one).otherwise(zero)
    else:
        stored, dead, dup = one, zero, zero
    return df.select(
        F.col("kafka_partition").alias("p"),
        F.col("kafka_offset").alias("o"),
        stored.alias("stored"),
        dead.alias("dead"),
        dup.alias("dup"),
    )


def lake_figures(
    spark: SparkSession, rows: DataFrame, ranges: Mapping[int, OffsetRange]
) -> tuple[dict[int, PartitionFigures], DataFrame]:
    """Per-partition figures (one small row per partition reaches the driver) and the rows keyed by
    (partition, offset) with their Kafka range - persisted: the caller unpersists it."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    C = F.col
    keys = rows.groupBy("p", "o").agg(
        F.count(F.lit(1)).alias("n"),
        F.sum("stored").alias("stored"),
        F.sum("dead").alias("dead"),
        F.sum("dup").alias("dup"),
    )
    marks = spark.createDataFrame(
        [(p, r.low, r.high) for p, r in ranges.items()], "p int, low long, high long"
    )
    # kept for the (rare) example queries; the caller unpersists it
    k = keys.join(F.broadcast(marks), "p", "left").persist(StorageLevel.MEMORY_AND_DISK)
    inside = C("low").isNotNull() & (C("o") >= C("low")) & (C("o") < C("high"))

    def rows_where(cond: Any, col: str = "n") -> Any:
        return F.sum(F.when(cond, C(col)).otherwise(F.lit(0)))

    try:
        agg = k.groupBy("p").agg(
            rows_where(inside, "stored").alias("stored"),
            rows_where(inside, "dead").alias("dead_lettered"),
            rows_where(inside, "dup").alias("duplicates"),
            F.count(F.when(inside, F.lit(1))).alias("distinct"),
            F.sum(C("n") - F.lit(1)).alias("surplus"),
            rows_where(C("low").isNotNull() & (C("o") < C("low"))).alias("expired"),
            rows_where(C("high").isNotNull() & (C("o") >= C("high"))).alias("beyond_high"),
            rows_where(C("low").isNull()).alias("unknown"),
            F.min(F.when(inside, C("o"))).alias("first"),
            F.max(F.when(inside, C("o"))).alias("last"),
        )
        figures: dict[int, PartitionFigures] = {}
        for r in agg.collect():
            d = r.asDict()
            p = d.pop("p")
            figures[int(p) if p is not None else -1] = PartitionFigures(
                **{
                    key: (int(v) if v is not None else (None if key in ("first", "last") else 0))
                    for key, v in d.items()
                }
            )
    except BaseException:
        k.unpersist()
        raise
    return figures, k


def interior_gaps(keyed: DataFrame, partitions: Sequence[int], limit: int = EXAMPLES) -> list[Gap]:
    """The first ``limit`` holes between offsets the lake holds, in the given partitions."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    C = F.col
    if not partitions:
        return []
    inside = C("low").isNotNull() & (C("o") >= C("low")) & (C("o") < C("high"))
    w = Window.partitionBy("p").orderBy("o")
    holes = (
        keyed.where(inside & C("p").isin(list(partitions)))
        .select("p", "o", F.lag("o").over(w).alias("prev"))
        .where(C("o") - C("prev") > F.lit(1))
        .orderBy("p", "prev")
        .limit(limit)
        .collect()
    )
    return [Gap(int(r["p"]), int(r["prev"]) + 1, int(r["o"]) - 1) for r in holes]


def double_examples(keyed: DataFrame, limit: int = EXAMPLES) -> list[dict[str, int]]:
    from pyspark.sql import functions as F

    rows = keyed.where(F.col("n") > 1).orderBy("p", "o").limit(limit).collect()
    return [
        {
            "partition": int(r["p"]),
            "offset": int(r["o"]),
            "rows": int(r["n"]),
            "stored": int(r["stored"]),
            "dead_letters": int(r["dead"]) + int(r["dup"]),
        }
        for r in rows
    ]


def run_audit(
    spark: SparkSession,
    cfg: StreamConfig,
    kafka_conf: Mapping[str, Any],
    kafka_timeout: float = 30.0,
) -> AuditResult:
    """One check of the lake against the topic (see the module documentation)."""
    from fms_jobs.sparkutil.hadoopfs import HadoopFS

    t0 = time.monotonic()
    ckpt = cfg.paths.checkpoint.rstrip("/")
    fs_c = HadoopFS(spark, ckpt)
    # the commit log first: every batch counted below read offsets under the watermarks read next
    last = last_committed_batch(fs_c, ckpt)
    committed_end = committed_end_offsets(fs_c.read_text(f"{ckpt}/offsets/{last}"), cfg.kafka.topic)
    ranges = kafka_ranges(kafka_conf, cfg.kafka.topic, kafka_timeout)
    processed = list_lake(HadoopFS(spark, cfg.paths.processed), cfg.paths.processed, last)
    dlq = list_lake(HadoopFS(spark, cfg.paths.dlq), cfg.paths.dlq, last)
    rows = read_rows(spark, processed.files, cfg.paths.processed, False).unionByName(
        read_rows(spark, dlq.files, cfg.paths.dlq, True)
    )
    figures, keyed = lake_figures(spark, rows, ranges)
    try:
        result = AuditResult(
            cfg.kafka.topic,
            ranges,
            figures,
            committed_end if last >= 0 else {},  # nothing committed yet: every record is still to come
            lake_files={
                "last_committed_batch": last,
                "processed": len(processed.files),
                "dlq": len(dlq.files),
                "uncommitted": len(processed.uncommitted) + len(dlq.uncommitted),
                "compaction_excluded": len(processed.compaction_excluded) + len(dlq.compaction_excluded),
            },
        )
        suspect = [p for p in ranges if result.missing_below_committed_in(p) > 0]
        if suspect:
            result.markers = kafka_markers(kafka_conf, cfg.kafka.topic, ranges, suspect, kafka_timeout)
        if result.missing:
            holes = [p for p in ranges if result.missing_in(p) and p in figures]
            result.gaps = first_gaps(edge_gaps(ranges, figures) + interior_gaps(keyed, holes))
        if result.double_counted:
            result.double_examples = double_examples(keyed)
    finally:
        keyed.unpersist()
    result.elapsed_seconds = time.monotonic() - t0
    return result


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None, *, spark: SparkSession | None = None) -> int:
    """Exit code: 0 conserved, 2 not conserved, 1 configuration error. ``spark``: use this session."""
    a = parse_args(argv)
    from fms_jobs.quality.rulebook import RulesError, load_rules
    from fms_jobs.streaming.config import StreamConfigError, librdkafka_config, load_stream_config

    try:
        cfg = load_stream_config(a.config)
        rules = load_rules(cfg.rules_path)
        check_config(cfg, rules.duplicates_dead_letter_copy)
        kafka_conf = {**librdkafka_config(cfg.kafka, "fms-audit"), **a.kafka_conf}
    except (StreamConfigError, RulesError, AuditError) as e:
        print(f"fms-audit: configuration error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    own = spark is None
    if spark is None:
        from fms_jobs.sparkutil.session import build_session

        spark = build_session("fms-audit", a.master or cfg.master, a.conf)
    session = spark
    try:
        result = audit_until(
            lambda: run_audit(session, cfg, kafka_conf, a.kafka_timeout), a.wait_seconds, a.interval
        )
    except AuditError as e:
        print(f"fms-audit: {e}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        if own:
            session.stop()
    print(json.dumps(result.to_dict()), flush=True)
    for problem in result.problems:
        log.error("not conserved: %s", problem)
    return exit_code(result)


if __name__ == "__main__":
    sys.exit(main())
