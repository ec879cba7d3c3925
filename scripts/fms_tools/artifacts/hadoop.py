"""Hadoop: hadoop-<version>.tar.gz (common + HDFS) laid out like the official tarball."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from . import jars, maven, templates
from .context import Context
from .notices import write_license_files
from .progress import step
from .tarball import write_tarball

NAME = "hadoop"
GROUP = "org.apache.hadoop"
TOP_LEVEL = {"hadoop-common": "common", "hadoop-hdfs": "hdfs", "hadoop-hdfs-client": "hdfs"}


def version(ctx: Context) -> str:
    return str(ctx.versions["hadoop"]["version"])


def outputs(ctx: Context) -> list[Path]:
    v = version(ctx)
    return [ctx.paths.apache / "hadoop" / "common" / f"hadoop-{v}" / f"hadoop-{v}.tar.gz"]


def inputs(ctx: Context) -> dict[str, Any]:
    return {"hadoop": ctx.versions["hadoop"], "build": ctx.versions["build"]}


def _place(root: Path, resolved: list[maven.Artifact], common_keys: set[str]) -> dict[str, list[str]]:
    """Copy every resolved jar to its official-tarball directory."""
    share = root / "share" / "hadoop"
    layout: dict[str, list[str]] = {}
    for artifact in resolved:
        c = artifact.coordinate
        if c.group == GROUP and c.artifact in TOP_LEVEL and not c.classifier:
            folder = share / TOP_LEVEL[c.artifact]
        elif artifact.key in common_keys:
            folder = share / "common" / "lib"
        else:
            folder = share / "hdfs" / "lib"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(artifact.path, folder / artifact.filename)
        layout.setdefault(str(folder.relative_to(root)), []).append(artifact.filename)
    return layout


def build(ctx: Context) -> dict[str, Any]:
    v = version(ctx)
    name = f"hadoop-{v}"
    root = ctx.fresh_staging(NAME) / name
    poms = ctx.paths.work / "poms"
    common = [maven.Coordinate(GROUP, "hadoop-common", v), maven.Coordinate(GROUP, "hadoop-auth", v)]
    hdfs = [maven.Coordinate(GROUP, "hadoop-hdfs", v), maven.Coordinate(GROUP, "hadoop-hdfs-client", v)]
    with step(f"hadoop {v}: resolving jars with Maven"):
        # Common's closure decides what lives in share/hadoop/common/lib; versions come from
        # the combined resolution so the two lib directories never disagree.
        common_keys = {a.key for a in maven.resolve(poms, "hadoop-common", common, ctx.paths.m2)}
        resolved = maven.resolve(
            poms, "hadoop", common + hdfs, ctx.paths.m2, copy_to=ctx.paths.staging / "hadoop-libs"
        )
        # The HDFS web UIs (webapps/hdfs, datanode, secondary, static, ...) are not in the main
        # hadoop-hdfs jar on Maven Central; its -tests jar carries the built webapps tree.
        tests_jar = maven.fetch(poms, maven.Coordinate(GROUP, "hadoop-hdfs", v, "tests"), ctx.paths.m2)
    layout = _place(root, resolved, common_keys)
    shutil.rmtree(ctx.paths.staging / "hadoop-libs")
    webapps = jars.extract_prefix(tests_jar, "webapps/", root / "share" / "hadoop" / "hdfs")
    for required in ("hdfs/index.html", "hdfs/dfshealth.html", "datanode/index.html", "static"):
        if not (root / "share/hadoop/hdfs/webapps" / required).exists():
            raise SystemExit(f"hadoop: webapps/{required} missing from {tests_jar.name}")

    templates.install("hadoop", root, {"VERSION": v})
    (root / "logs").mkdir(exist_ok=True)

    all_jars = sorted((root / "share").rglob("*.jar"))
    scripts = [root / "bin" / "hdfs", root / "bin" / "hadoop"]
    wanted = jars.classes_named_in_scripts(scripts)
    missing = jars.missing_classes(wanted, all_jars)
    if missing:
        raise SystemExit(f"hadoop: launcher classes missing from share/hadoop: {', '.join(missing)}")

    write_license_files(
        root,
        product=f"Apache Hadoop {v} (common + HDFS)",
        license_jar=root / "share" / "hadoop" / "common" / f"hadoop-common-{v}.jar",
        resolved=resolved,
        how=(
            "share/hadoop/{common,hdfs}/ hold hadoop-common, hadoop-auth, hadoop-hdfs and "
            "hadoop-hdfs-client with their runtime dependencies, resolved from Maven Central by "
            "`mvn dependency:copy-dependencies` on a generated POM and placed as in the official "
            "tarball (dependencies of hadoop-common in common/lib, the rest in hdfs/lib). "
            "share/hadoop/hdfs/webapps/ (NameNode/DataNode web UIs) comes from the "
            f"hadoop-hdfs-{v}-tests.jar. bin/, sbin/, libexec/ and etc/hadoop/ were written for the "
            "FMS lab. Not included: YARN, MapReduce, tools (s3a, ...), HttpFS, KMS, native "
            "libraries (lib/native)."
        ),
    )
    with step(f"hadoop: packing {name}.tar.gz"):
        write_tarball(root, outputs(ctx)[0], epoch=ctx.epoch, level=ctx.gzip_level)
    shutil.rmtree(root.parent)
    return {
        "layout": {k: sorted(vs) for k, vs in layout.items()},
        "webapps_files": webapps,
        "launcher_classes": sorted(wanted),
    }
