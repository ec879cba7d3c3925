"""Idempotent, per-micro-batch publication of Parquet files (the exactly-once file sink).

Protocol for batch N of a dataset rooted at ``root``:

1. Spark writes the batch to ``root/_staging/batch=N/`` (overwrite; partitioned).
2. If ``root/_manifests/N.json`` exists, an earlier attempt of batch N got at
   least as far as step 3: every file it lists is deleted (missing ones are fine).
3. The manifest of this attempt is written: the final names of all its files,
   ``part-<N>-<k>.snappy.parquet`` in their partition directories.
4. Each staged file is renamed to its final name; the staging directory is removed.
5. The manifest is rewritten with ``state: committed`` and the commit time.

The streaming query records batch N in its commit log only after the
``foreachBatch`` function returned, i.e. after step 5. If the driver dies
anywhere before that, Spark re-runs batch N with the same offsets (and the same
state store version); step 2 removes whatever the dead attempt published, so the
lake ends up with exactly one attempt's files for every batch - no loss, no
duplicates. Readers see a batch appear file by file (a rename each); readers of
closed hours - the hourly job - never race with it.

Manifests of batches far behind the last one are deleted (only the newest
uncommitted batch can ever be replayed); their ``committed_at_ms`` is what the
benchmark reads to measure latency up to the committed Parquet row.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass

from fms_jobs.lake import batch_file_prefix
from fms_jobs.sparkutil.hadoopfs import HadoopFS

MANIFESTS = "_manifests"
STAGING = "_staging"
_PART_DIR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=[^/]+$")


@dataclass
class Publication:
    batch_id: int
    files: list[str]
    committed_at_ms: int
    replaced: int  # files of an earlier attempt that were removed


class BatchPublisher:
    def __init__(self, fs: HadoopFS, root: str, keep_manifests: int = 200) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.keep_manifests = keep_manifests

    def staging_dir(self, batch_id: int) -> str:
        return f"{self.root}/{STAGING}/batch={batch_id}"

    def scratch_dir(self, batch_id: int) -> str:
        """Where the streaming job tries parts of a batch whose write failed (never published)."""
        return f"{self.root}/{STAGING}/isolate-batch={batch_id}"

    def manifest_path(self, batch_id: int) -> str:
        return f"{self.root}/{MANIFESTS}/{batch_id:012d}.json"

    def read_manifest(self, batch_id: int) -> dict | None:
        text = self.fs.read_text(self.manifest_path(batch_id))
        return json.loads(text) if text else None

    def _targets(self, batch_id: int, staging: str) -> list[tuple[str, str]]:
        staged = sorted(
            f.path for f in self.fs.files(staging) if f.path.endswith(".parquet") and "/." not in f.path
        )
        base = self.fs.qualify(staging)
        pairs: list[tuple[str, str]] = []
        for i, src in enumerate(staged):
            rel = src[len(base) :].lstrip("/") if src.startswith(base) else src.rsplit("/", 1)[-1]
            parts = [p for p in rel.split("/")[:-1] if _PART_DIR.match(p)]
            directory = "/".join([self.root, *parts])
            pairs.append((src, f"{directory}/{batch_file_prefix(batch_id)}{i:05d}.snappy.parquet"))
        return pairs

    def publish(self, batch_id: int) -> Publication:
        staging = self.staging_dir(batch_id)
        replaced = 0
        previous = self.read_manifest(batch_id)
        if previous:
            for p in previous.get("files", []):
                if self.fs.delete(p, False):
                    replaced += 1
        pairs = self._targets(batch_id, staging)
        finals = [dst for _, dst in pairs]
        doc = {"batch_id": batch_id, "state": "publishing", "files": finals}
        self.fs.write_text(self.manifest_path(batch_id), json.dumps(doc))
        for src, dst in pairs:
            if self.fs.exists(dst):  # only possible after a crash between rename and manifest rewrite
                self.fs.delete(dst, False)
            self.fs.mkdirs(dst.rsplit("/", 1)[0])
            if not self.fs.rename(src, dst):
                raise OSError(f"cannot publish {src} -> {dst}")
        self.fs.delete(staging, True)
        committed = int(time.time() * 1000)
        doc.update(state="committed", committed_at_ms=committed)
        self.fs.write_text(self.manifest_path(batch_id), json.dumps(doc))
        if batch_id % 50 == 0:
            self.sweep_manifests(batch_id)
        return Publication(batch_id, finals, committed, replaced)

    def sweep_manifests(self, batch_id: int) -> int:
        removed = 0
        for f in self.fs.ls(f"{self.root}/{MANIFESTS}"):
            name = f.path.rsplit("/", 1)[-1]
            stem = name.split(".", 1)[0]
            if stem.isdigit() and int(stem) < batch_id - self.keep_manifests:
                removed += int(self.fs.delete(f.path, False))
        return removed

    def discard_staging(self, batch_id: int) -> None:
        self.fs.delete(self.staging_dir(batch_id), True)
