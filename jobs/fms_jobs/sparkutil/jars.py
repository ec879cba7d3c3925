"""Locate (or fetch) the extra jars Spark needs: the Kafka connector and s3a.

Production never resolves jars at job start: the spark role installs them at
deploy time from the artifact mirror (Maven layout). This module finds the same
files for local runs and tests, in this order:

1. ``$FMS_SPARK_JARS`` - an explicit comma-separated list of jar paths;
2. Maven-layout repositories: ``$FMS_CACHE_DIR/mirror/maven2`` (the lab mirror),
   ``$FMS_CACHE_DIR/maven-jars`` (this module's download cache), ``~/.m2/repository``;
3. a download from ``$FMS_MAVEN_URL`` (default Maven Central) into the cache,
   verified against the published ``.sha1`` - only when ``download=True``.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path

# Maven Central, as this project reaches it, stops at 3.5.7 for the connector;
# it is binary-compatible with the Spark 3.5.9 runtime (same as the lab mirror).
SPARK_CONNECTOR_VERSION = "3.5.7"
KAFKA_CONNECTOR: tuple[str, ...] = (
    f"org.apache.spark:spark-sql-kafka-0-10_2.12:{SPARK_CONNECTOR_VERSION}",
    f"org.apache.spark:spark-token-provider-kafka-0-10_2.12:{SPARK_CONNECTOR_VERSION}",
    "org.apache.kafka:kafka-clients:3.4.1",
    "org.apache.commons:commons-pool2:2.11.1",
)
S3A: tuple[str, ...] = (
    "org.apache.hadoop:hadoop-aws:3.3.4",
    "com.amazonaws:aws-java-sdk-bundle:1.12.262",
    "org.wildfly.openssl:wildfly-openssl:1.0.7.Final",
)
DEFAULT_MAVEN_URL = "https://repo1.maven.org/maven2"


class MissingJars(RuntimeError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("FMS_CACHE_DIR", "/var/cache/fms-platform"))


def maven_path(coordinate: str) -> str:
    group, artifact, version = coordinate.split(":")
    return f"{group.replace('.', '/')}/{artifact}/{version}/{artifact}-{version}.jar"


def repositories() -> list[Path]:
    c = cache_dir()
    return [c / "mirror" / "maven2", c / "maven-jars", Path.home() / ".m2" / "repository"]


def _download(coordinate: str, dest_root: Path, base_url: str, timeout: float = 300.0) -> Path:
    rel = maven_path(coordinate)
    dest = dest_root / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    url = f"{base_url.rstrip('/')}/{rel}"
    with urllib.request.urlopen(url + ".sha1", timeout=60) as r:
        expected = r.read().decode().split()[0].strip().lower()
    tmp = dest.with_suffix(".part")
    h = hashlib.sha1()
    with urllib.request.urlopen(url, timeout=timeout) as r, tmp.open("wb") as out:
        while chunk := r.read(1 << 20):
            h.update(chunk)
            out.write(chunk)
    if h.hexdigest() != expected:
        tmp.unlink(missing_ok=True)
        raise MissingJars(f"{url}: sha1 mismatch (got {h.hexdigest()}, published {expected})")
    tmp.replace(dest)
    return dest


def find_jars(
    coordinates: Iterable[str],
    repos: Sequence[Path] | None = None,
    download: bool = False,
    base_url: str | None = None,
) -> list[str]:
    explicit = os.environ.get("FMS_SPARK_JARS")
    if explicit:
        return [p for p in (x.strip() for x in explicit.split(",")) if p]
    repos = list(repos) if repos is not None else repositories()
    found: list[str] = []
    missing: list[str] = []
    for coord in coordinates:
        rel = maven_path(coord)
        hit = next((r / rel for r in repos if (r / rel).is_file()), None)
        if hit is None and download:
            hit = _download(
                coord,
                cache_dir() / "maven-jars",
                base_url or os.environ.get("FMS_MAVEN_URL") or DEFAULT_MAVEN_URL,
            )
        if hit is None:
            missing.append(coord)
        else:
            found.append(str(hit))
    if missing:
        raise MissingJars(
            f"jars not found in {[str(r) for r in repos]}: {missing}; "
            "build the mirror (.venv/bin/fms-artifacts build maven) or set FMS_SPARK_JARS"
        )
    return found
