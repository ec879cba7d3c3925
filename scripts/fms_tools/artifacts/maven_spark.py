"""Maven-layout jars Spark loads at deploy time: the Kafka connector and s3a (hadoop-aws).

Only the jars Spark does not already bundle are mirrored (e.g. kafka-clients,
spark-token-provider-kafka-0-10, commons-pool2, aws-java-sdk-bundle), computed by resolving
each artifact's runtime closure and subtracting the pyspark wheel's jars/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import maven
from .context import Context
from .maven_mirror import bundled_by_spark, publish_all, wheel_jar_names
from .progress import step
from .wheels import ensure_wheel

NAME = "maven"
TEMPLATE_FAMILY = "none"
GROUPS = ("spark_kafka", "s3a")


def _coordinates(ctx: Context) -> list[maven.Coordinate]:
    cfg = ctx.versions["maven_mirror"]
    return [maven.Coordinate.parse(text) for group in GROUPS for text in cfg[group]]


def outputs(ctx: Context) -> list[Path]:
    return [c.repo_dir(ctx.paths.maven2) / c.filename for c in _coordinates(ctx)]


def checksum_outputs(ctx: Context) -> list[Path]:
    return [p.with_name(p.name + ".sha1") for p in outputs(ctx)]


def inputs(ctx: Context) -> dict[str, Any]:
    cfg = ctx.versions["maven_mirror"]
    return {"groups": {g: cfg[g] for g in GROUPS}, "spark": ctx.versions["spark"]}


def build(ctx: Context) -> dict[str, Any]:
    spark_version = str(ctx.versions["spark"]["version"])
    bundled = wheel_jar_names(ensure_wheel(ctx.paths, "pyspark", spark_version))
    mirrored: dict[str, list[str]] = {}
    written: list[Path] = []
    for coord in _coordinates(ctx):
        with step(f"maven: resolving {coord.group}:{coord.artifact}:{coord.version}"):
            resolved = maven.resolve(
                ctx.paths.work / "poms", f"mirror-{coord.artifact}", [coord], ctx.paths.m2
            )
        extra = [a for a in resolved if not bundled_by_spark(a, bundled)]
        written += publish_all(ctx.paths.maven2, extra)
        mirrored[f"{coord.group}:{coord.artifact}:{coord.version}"] = [a.filename for a in extra]
    return {"mirrored": mirrored, "extra_outputs": [str(p) for p in written]}
