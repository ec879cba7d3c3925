"""Kafka: kafka_<scala>-<version>.tgz assembled from Maven Central jars + our launchers."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from . import jars, maven, templates
from .context import Context
from .notices import write_license_files
from .progress import step
from .tarball import write_tarball

NAME = "kafka"
TEMPLATE_FAMILIES = ("kafka", "common")


def _settings(ctx: Context) -> dict[str, Any]:
    return ctx.versions["kafka"]


def dist_name(ctx: Context) -> str:
    cfg = _settings(ctx)
    return f"kafka_{cfg['scala']}-{cfg['version']}"


def outputs(ctx: Context) -> list[Path]:
    version = _settings(ctx)["version"]
    return [ctx.paths.apache / "kafka" / version / f"{dist_name(ctx)}.tgz"]


def inputs(ctx: Context) -> dict[str, Any]:
    return {"kafka": _settings(ctx), "build": ctx.versions["build"]}


def coordinates(ctx: Context) -> list[maven.Coordinate]:
    cfg = _settings(ctx)
    version, scala, log4j = cfg["version"], cfg["scala"], cfg["log4j2"]
    kafka = "org.apache.kafka"
    return [
        maven.Coordinate(kafka, f"kafka_{scala}", version),
        maven.Coordinate(kafka, "kafka-tools", version),
        maven.Coordinate(kafka, "kafka-storage", version),
        # MirrorMaker 2 (connect-mirror-maker.sh) runs on the Connect runtime.
        maven.Coordinate(kafka, "connect-mirror", version),
        maven.Coordinate(kafka, "connect-runtime", version),
        # Log4j 2 runtime bindings the official tarball ships (not in Kafka's published POMs).
        maven.Coordinate("org.apache.logging.log4j", "log4j-core", log4j),
        maven.Coordinate("org.apache.logging.log4j", "log4j-slf4j-impl", log4j),
        maven.Coordinate("org.apache.logging.log4j", "log4j-1.2-api", log4j),
    ]


def build(ctx: Context) -> dict[str, Any]:
    cfg = _settings(ctx)
    name = dist_name(ctx)
    root = ctx.fresh_staging(NAME) / name
    with step(f"kafka {cfg['version']}: resolving jars with Maven"):
        resolved = maven.resolve(
            ctx.paths.work / "poms", "kafka", coordinates(ctx), ctx.paths.m2, copy_to=root / "libs"
        )
    templates.install("kafka", root, {"VERSION": cfg["version"]})
    (root / "logs").mkdir(exist_ok=True)
    (root / "logs" / ".keep").write_text("", encoding="utf-8")

    libs = sorted((root / "libs").glob("*.jar"))
    wanted = jars.classes_named_in_scripts(sorted((root / "bin").glob("*.sh")))
    missing = jars.missing_classes(wanted, libs)
    if missing:
        raise SystemExit(f"kafka: launcher classes missing from libs/: {', '.join(missing)}")

    write_license_files(
        root,
        product=f"Apache Kafka {cfg['version']} (Scala {cfg['scala']})",
        license_jar=root / "libs" / f"kafka-clients-{cfg['version']}.jar",
        resolved=resolved,
        how=(
            "libs/ holds org.apache.kafka:kafka_{scala}, kafka-tools, kafka-storage, connect-mirror and "
            "connect-runtime with their runtime dependencies, resolved from Maven Central by "
            "`mvn dependency:copy-dependencies` on a generated POM, plus the Log4j 2 bindings. "
            "bin/ and config/ were written for the FMS lab to behave like the upstream scripts."
        ).replace("{scala}", cfg["scala"]),
    )
    with step(f"kafka: packing {name}.tgz"):
        write_tarball(root, outputs(ctx)[0], epoch=ctx.epoch, level=ctx.gzip_level)
    shutil.rmtree(root.parent)
    return {"jars": [a.filename for a in resolved], "launcher_classes": sorted(wanted)}
