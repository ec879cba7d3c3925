"""Copy closed partitions of the lake to the S3 data lake tiers (s3a), idempotently.

::

    python -m fms_jobs.batch.archive \\
        --dataset processed=hdfs:///fms/processed=s3a://fms-lake-processed/processed \\
        --dataset hourly_summary=hdfs:///fms/curated/hourly_summary=s3a://fms-lake-curated/hourly_summary \\
        --runs hdfs:///fms/curated/hourly_summary/_runs --older-than-hours 2 \\
        --s3-endpoint http://127.0.0.1:5000 --s3-path-style

A partition is *closed* when it is older than ``--older-than-hours`` and, for the
processed data, when the hourly job has summarised (and compacted) it - its run
record exists in ``--runs``. Files are copied byte for byte through Hadoop's
FileSystem API (``FileUtil.copy``) and verified by size; a file already present
at the destination with the same size is skipped, so re-runs copy nothing new.
Each archived partition gets a ``_fms_archive.json`` manifest at the destination
listing what was copied. Nothing is deleted at the source: retention is a
separate, explicit decision (S3 lifecycle rules move objects to IA/Glacier).

Credentials for s3a come from the standard AWS provider chain (environment,
instance profile); ``--s3-endpoint`` points it at an emulator (moto in the lab).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from fms_jobs.lake import PARTITION_DIR, Hour
from fms_jobs.sparkutil.hadoopfs import HadoopFS

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)
MANIFEST = "_fms_archive.json"


@dataclass
class Dataset:
    name: str
    source: str
    dest: str

    @classmethod
    def parse(cls, spec: str) -> Dataset:
        name, sep, rest = spec.partition("=")
        src, sep2, dst = rest.partition("=")
        if not sep or not sep2 or not name or not src or not dst:
            raise ValueError(f"--dataset must be NAME=SOURCE=DEST, got {spec!r}")
        return cls(name, src.rstrip("/"), dst.rstrip("/"))


@dataclass
class ArchiveReport:
    dataset: str
    partitions: int = 0
    copied: int = 0
    skipped: int = 0
    bytes: int = 0
    not_ready: list[str] = field(default_factory=list)


def s3a_conf(endpoint: str | None, path_style: bool, region: str | None = None) -> dict[str, str]:
    conf = {
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
        "spark.hadoop.fs.s3a.aws.credentials.provider": (
            "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider,"
            "com.amazonaws.auth.EnvironmentVariableCredentialsProvider,"
            "com.amazonaws.auth.InstanceProfileCredentialsProvider"
        ),
        "spark.hadoop.fs.s3a.fast.upload": "true",
    }
    if endpoint:
        conf["spark.hadoop.fs.s3a.endpoint"] = endpoint
        conf["spark.hadoop.fs.s3a.connection.ssl.enabled"] = str(endpoint.startswith("https")).lower()
    if path_style:
        conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
    if region:
        conf["spark.hadoop.fs.s3a.endpoint.region"] = region
    return conf


def partition_time(rel: str) -> tuple[datetime, timedelta] | None:
    """Start and length of a year=/month=/day=[/hour=] partition path."""
    m = PARTITION_DIR.search(rel)
    if not m:
        return None
    y, mo, d, h = m.groups()
    start = datetime(int(y), int(mo), int(d), int(h or 0), tzinfo=UTC)
    return start, timedelta(hours=1) if h is not None else timedelta(days=1)


class Archiver:
    def __init__(self, spark: SparkSession, runs: str | None = None) -> None:
        self.spark = spark
        self.runs = runs.rstrip("/") if runs else None
        self.fs_runs = HadoopFS(spark, self.runs) if self.runs else None

    def partitions(self, fs: HadoopFS, root: str) -> list[str]:
        """Leaf partition directories (relative) under root that hold parquet files."""
        seen: set[str] = set()
        base = fs.qualify(root)
        for f in fs.files(root):
            if not f.path.endswith(".parquet") or "/_" in f.path[len(base) :]:
                continue
            rel = f.path[len(base) :].lstrip("/").rsplit("/", 1)[0]
            if partition_time(rel):
                seen.add(rel)
        return sorted(seen)

    def ready(self, ds: Dataset, rel: str, cutoff: datetime) -> bool:
        pt = partition_time(rel)
        if pt is None:
            return False
        start, length = pt
        if start + length > cutoff:
            return False
        if ds.name == "processed" and self.fs_runs is not None and length == timedelta(hours=1):
            # the hourly job's run record of the hour (HourlySummaryJob.run_record_path)
            return self.fs_runs.exists(f"{self.runs}/{Hour(start).key}.json")
        return True

    def archive(self, ds: Dataset, older_than: timedelta, now: datetime | None = None) -> ArchiveReport:
        now = now or datetime.now(UTC)
        cutoff = now - older_than
        src_fs = HadoopFS(self.spark, ds.source)
        dst_fs = HadoopFS(self.spark, ds.dest)
        report = ArchiveReport(ds.name)
        base = src_fs.qualify(ds.source)
        for rel in self.partitions(src_fs, ds.source):
            if not self.ready(ds, rel, cutoff):
                report.not_ready.append(rel)
                continue
            report.partitions += 1
            existing = {
                f.path.rsplit("/", 1)[-1]: f.size for f in dst_fs.ls(f"{ds.dest}/{rel}") if not f.is_dir
            }
            copied: list[dict[str, object]] = []
            for f in src_fs.ls(f"{base}/{rel}"):
                name = f.path.rsplit("/", 1)[-1]
                if f.is_dir or not name.endswith(".parquet"):
                    continue
                if existing.get(name) == f.size:
                    report.skipped += 1
                    copied.append({"file": name, "size": f.size})
                    continue
                dst = f"{ds.dest}/{rel}/{name}"
                src_fs.copy(f.path, dst_fs, dst)
                after = {x.path.rsplit("/", 1)[-1]: x.size for x in dst_fs.ls(f"{ds.dest}/{rel}")}
                if after.get(name) != f.size:
                    raise OSError(
                        f"archive verification failed for {dst}: size {after.get(name)} != {f.size}"
                    )
                report.copied += 1
                report.bytes += f.size
                copied.append({"file": name, "size": f.size})
            doc = {"partition": rel, "files": copied, "archived_at": now.isoformat(), "source": ds.source}
            prev = dst_fs.read_text(f"{ds.dest}/{rel}/{MANIFEST}")
            if not prev or json.loads(prev).get("files") != copied:
                dst_fs.write_text(f"{ds.dest}/{rel}/{MANIFEST}", json.dumps(doc))
        return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fms_jobs.batch.archive", description=__doc__)
    p.add_argument("--dataset", action="append", required=True, help="NAME=SOURCE=DEST (repeatable)")
    p.add_argument("--runs", help="hourly summary _runs directory: only summarised hours are archived")
    p.add_argument("--older-than-hours", type=float, default=2.0)
    p.add_argument("--s3-endpoint")
    p.add_argument("--s3-path-style", action="store_true")
    p.add_argument("--s3-region")
    p.add_argument("--master")
    p.add_argument("--local-jars", action="store_true", help="add hadoop-aws from the local artifact mirror")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        datasets = [Dataset.parse(d) for d in a.dataset]
    except ValueError as e:
        print(f"fms-archive: {e}", file=sys.stderr)
        return 1
    from fms_jobs.sparkutil.jars import S3A, find_jars
    from fms_jobs.sparkutil.session import build_session

    jars = find_jars(S3A) if a.local_jars else []
    spark = build_session(
        "fms-archive", a.master, s3a_conf(a.s3_endpoint, a.s3_path_style, a.s3_region), jars
    )
    archiver = Archiver(spark, a.runs)
    rc = 0
    for ds in datasets:
        try:
            r = archiver.archive(ds, timedelta(hours=a.older_than_hours))
            print(json.dumps({**r.__dict__, "not_ready": len(r.not_ready)}))
        except Exception as e:  # report and continue with the other datasets
            log.exception("archiving %s failed", ds.name)
            print(json.dumps({"dataset": ds.name, "error": str(e)}))
            rc = 2
    spark.stop()
    return rc


if __name__ == "__main__":
    sys.exit(main())
