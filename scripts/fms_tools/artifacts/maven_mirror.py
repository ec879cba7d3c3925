"""Publish resolved Maven artifacts into the mirror's Maven-layout tree (mirror/maven2)."""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Iterable
from pathlib import Path

from . import checksums
from .maven import Artifact, Coordinate


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)  # Maven cache files are immutable: share the bytes
    except OSError:
        shutil.copyfile(source, tmp)
    tmp.replace(target)


def _verify_against_cache(source: Path) -> None:
    """The local repository keeps the registry's .sha1 beside each file: check it."""
    published = source.with_name(source.name + ".sha1")
    if published.is_file():
        expected = published.read_text(encoding="ascii").split()[0].strip().lower()
        actual = checksums.digest(source, "sha1")
        if expected != actual:
            raise SystemExit(f"{source}: sha1 {actual} does not match the published {expected}")


def publish(maven2: Path, coordinate: Coordinate, jar: Path) -> list[Path]:
    """Place jar + pom (+ .sha1 each) under maven2/<group>/<artifact>/<version>/."""
    folder = coordinate.repo_dir(maven2)
    written: list[Path] = []
    pom = jar.with_name(f"{coordinate.artifact}-{coordinate.version}.pom")
    for source in (jar, pom):
        if not source.is_file():
            if source is pom:
                continue
            raise SystemExit(f"{source} missing from the Maven cache")
        _verify_against_cache(source)
        target = folder / source.name
        _link_or_copy(source, target)
        written += [target, checksums.write_bare_checksum(target, "sha1")]
    return written


def publish_all(maven2: Path, artifacts: Iterable[Artifact]) -> list[Path]:
    written: list[Path] = []
    for artifact in artifacts:
        written += publish(maven2, artifact.coordinate, artifact.path)
    return written


def wheel_jar_names(wheel: Path) -> set[str]:
    """File names of the jars a pyspark wheel bundles (pyspark/jars/*.jar)."""
    with zipfile.ZipFile(wheel) as archive:
        return {
            Path(name).name
            for name in archive.namelist()
            if name.startswith("pyspark/jars/") and name.endswith(".jar")
        }


def bundled_by_spark(artifact: Artifact, bundled: set[str]) -> bool:
    """True when Spark's jars/ already has this artifact, in any version.

    A second version of a jar Spark ships (e.g. spark-tags 3.5.7 next to 3.5.9, or an older
    snappy-java) would only put duplicate classes on the classpath.
    """
    prefix = artifact.coordinate.artifact + "-"
    return any(name.startswith(prefix) and name[len(prefix) :][:1].isdigit() for name in bundled)
