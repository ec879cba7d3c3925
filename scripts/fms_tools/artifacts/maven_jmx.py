"""The Prometheus JMX exporter java agent, in Maven layout (a shaded jar: no dependencies)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import maven
from .context import Context
from .maven_mirror import publish

NAME = "jmx"
TEMPLATE_FAMILY = "none"


def _coordinates(ctx: Context) -> list[maven.Coordinate]:
    return [maven.Coordinate.parse(text) for text in ctx.versions["maven_mirror"]["jmx"]]


def outputs(ctx: Context) -> list[Path]:
    return [c.repo_dir(ctx.paths.maven2) / c.filename for c in _coordinates(ctx)]


def checksum_outputs(ctx: Context) -> list[Path]:
    return [p.with_name(p.name + ".sha1") for p in outputs(ctx)]


def inputs(ctx: Context) -> dict[str, Any]:
    return {"jmx": ctx.versions["maven_mirror"]["jmx"]}


def build(ctx: Context) -> dict[str, Any]:
    written: list[Path] = []
    for coord in _coordinates(ctx):
        jar = maven.fetch(ctx.paths.work / "poms", coord, ctx.paths.m2)
        maven.fetch(ctx.paths.work / "poms", coord, ctx.paths.m2, packaging="pom")
        written += publish(ctx.paths.maven2, coord, jar)
    return {"extra_outputs": [str(p) for p in written]}
