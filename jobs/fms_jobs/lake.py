"""Layout of the lake: written by the streaming job, read and compacted by the batch jobs.

The processed and dead-letter datasets are partitioned by PARTITION_COLUMNS (Hour.partition);
each micro-batch publishes ``part-<batch id, 12 digits>-<n>.snappy.parquet`` files
(batch_file_prefix, BATCH_FILE).

Besides the streaming job's partitions and batch files, the hourly job keeps its compaction
bookkeeping in the processed lake: ``<root>/_compactions/<hour key>.json`` (one manifest per
compacted hour), ``<root>/_compact/<hour key>/`` (the staged output) and the compacted files
``part-c<hour key>-<run>-<n>.snappy.parquet`` in the hour's partition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fms_jobs.sparkutil.hadoopfs import FileInfo, HadoopFS

PARTITION_COLUMNS = ("year", "month", "day", "hour")
BATCH_FILE = re.compile(r"/part-(\d{12})-\d+\.snappy\.parquet$")
COMPACT_FILE = re.compile(r"/part-c\d{10}-[0-9a-f]+-\d+\.snappy\.parquet$")
# A partition directory (Hour.partition, or Hour.day_partition for the summaries) at the end of a path.
PARTITION_DIR = re.compile(r"year=(\d{4})/month=(\d{1,2})/day=(\d{1,2})(?:/hour=(\d{1,2}))?$")
COMPACTIONS = "_compactions"
COMPACT_STAGING = "_compact"


@dataclass(frozen=True)
class Hour:
    start: datetime  # UTC, on the hour

    @classmethod
    def parse(cls, text: str) -> Hour:
        """'2024-01-15T14' or '2024-01-15T14:00[:00][Z]'."""
        t = text.strip().rstrip("Z")
        for fmt in ("%Y-%m-%dT%H", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"):
            try:
                dt = datetime.strptime(t, fmt).replace(tzinfo=UTC)
                return cls(dt.replace(minute=0, second=0, microsecond=0))
            except ValueError:
                continue
        raise ValueError(f"not an hour: {text!r} (expected e.g. 2024-01-15T14)")

    @classmethod
    def containing(cls, dt: datetime) -> Hour:
        return cls(dt.astimezone(UTC).replace(minute=0, second=0, microsecond=0))

    @property
    def end(self) -> datetime:
        return self.start + timedelta(hours=1)

    @property
    def key(self) -> str:
        return self.start.strftime("%Y%m%d%H")

    def partition(self) -> str:
        s = self.start
        values = (s.year, s.month, s.day, s.hour)
        return "/".join(f"{c}={v}" for c, v in zip(PARTITION_COLUMNS, values, strict=True))

    def day_partition(self) -> str:
        return self.partition().rsplit("/", 1)[0]

    def __str__(self) -> str:
        return self.start.strftime("%Y-%m-%dT%H:00Z")


def compaction_manifest(root: str, hour: Hour) -> str:
    return f"{root}/{COMPACTIONS}/{hour.key}.json"


def compaction_staging(root: str, hour: Hour) -> str:
    return f"{root}/{COMPACT_STAGING}/{hour.key}"


def compacted_file_name(hour: Hour, run: str, index: int) -> str:
    """A compacted file of the hour (matches COMPACT_FILE: ``run`` is lower-case hex)."""
    return f"part-c{hour.key}-{run}-{index:05d}.snappy.parquet"


def batch_file_prefix(batch_id: int) -> str:
    """The name every file of the batch's publication starts with (BATCH_FILE reads it back)."""
    return f"part-{batch_id:012d}-"


def batch_of(path: str) -> int | None:
    m = BATCH_FILE.search(path)
    return int(m.group(1)) if m else None


def last_committed_batch(fs: HadoopFS, checkpoint: str) -> int:
    """Highest batch id in the streaming query's commit log (-1 when none)."""
    best = -1
    for f in fs.ls(f"{checkpoint.rstrip('/')}/commits"):
        name = f.path.rsplit("/", 1)[-1]
        if name.isdigit():
            best = max(best, int(name))
    return best


def committed_files(
    fs: HadoopFS, directory: str, last_batch: int | None
) -> tuple[list[FileInfo], list[FileInfo]]:
    """(committed parquet files, files of batches not committed yet) directly under a partition directory."""
    ok: list[FileInfo] = []
    pending: list[FileInfo] = []
    for f in fs.ls(directory):
        if f.is_dir or not f.path.endswith(".parquet"):
            continue
        b = batch_of(f.path)
        if b is None or last_batch is None or b <= last_batch:
            ok.append(f)
        else:
            pending.append(f)
    return sorted(ok, key=lambda f: f.path), pending
