"""Spark: spark-<version>-bin-hadoop3.tgz assembled from the pyspark wheel."""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

from . import templates
from .context import Context
from .notices import write_license_files
from .progress import step
from .tarball import write_tarball
from .wheels import ensure_wheel

NAME = "spark"
# Wheel folders copied to the distribution root (wheel path -> distribution path).
DIST_DIRS = {
    "pyspark/jars/": "jars/",
    "pyspark/bin/": "bin/",
    "pyspark/sbin/": "sbin/",
    "pyspark/python/lib/": "python/lib/",
    "pyspark/licenses/": "licenses/",
}
# Not Python sources of the package (python/pyspark/ in the official layout).
NOT_PYTHON = (
    "pyspark/jars/",
    "pyspark/bin/",
    "pyspark/sbin/",
    "pyspark/python/",
    "pyspark/licenses/",
    "pyspark/data/",
    "pyspark/examples/",
)
# Windows launchers are useless on the lab hosts; docker-image-tool/sparkR need files we lack.
SKIP_BIN = re.compile(r"\.cmd$")


def _settings(ctx: Context) -> dict[str, Any]:
    return ctx.versions["spark"]


def dist_name(ctx: Context) -> str:
    return f"spark-{_settings(ctx)['version']}-bin-hadoop3"


def outputs(ctx: Context) -> list[Path]:
    v = _settings(ctx)["version"]
    return [ctx.paths.apache / "spark" / f"spark-{v}" / f"{dist_name(ctx)}.tgz"]


def inputs(ctx: Context) -> dict[str, Any]:
    return {"spark": _settings(ctx), "build": ctx.versions["build"]}


def _target_for(name: str) -> str | None:
    for prefix, dest in DIST_DIRS.items():
        if name.startswith(prefix):
            rest = name[len(prefix) :]
            if dest == "bin/" and SKIP_BIN.search(rest):
                return None
            return dest + rest
    if name.startswith("pyspark/") and not name.startswith(NOT_PYTHON) and "__pycache__" not in name:
        return "python/" + name
    return None


def _unpack(wheel: Path, root: Path) -> int:
    count = 0
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            target = _target_for(info.filename)
            if target is None:
                continue
            path = root / target
            path.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, path.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            top = target.split("/", 1)[0]
            path.chmod(0o755 if top in {"bin", "sbin"} else 0o644)
            count += 1
    return count


def build(ctx: Context) -> dict[str, Any]:
    cfg = _settings(ctx)
    version, hadoop_client = str(cfg["version"]), str(cfg["hadoop_client"])
    with step(f"spark {version}: locating the pyspark=={version} wheel"):
        wheel = ensure_wheel(ctx.paths, "pyspark", version)
    root = ctx.fresh_staging(NAME) / dist_name(ctx)
    with step(f"spark: unpacking {wheel.name}"):
        files = _unpack(wheel, root)
    core = root / "jars" / f"spark-core_{cfg['scala']}-{version}.jar"
    if not core.is_file():
        raise SystemExit(f"spark: {core.name} not in the wheel; is versions.yml spark.scala right?")
    if not (root / "jars" / f"hadoop-client-api-{hadoop_client}.jar").is_file():
        bundled = sorted(p.name for p in (root / "jars").glob("hadoop-client-api-*.jar"))
        raise SystemExit(
            f"spark: versions.yml spark.hadoop_client={hadoop_client} but the wheel has {bundled}"
        )
    py4j = sorted((root / "python" / "lib").glob("py4j-*-src.zip"))
    if not py4j or not (root / "python" / "lib" / "pyspark.zip").is_file():
        raise SystemExit("spark: python/lib/pyspark.zip or py4j-*-src.zip missing from the wheel")

    templates.install(
        "spark", root, {"VERSION": version, "HADOOP_VERSION": hadoop_client, "SCALA": str(cfg["scala"])}
    )
    (root / "logs").mkdir(exist_ok=True)
    write_license_files(
        root,
        product=f"Apache Spark {version} (Scala {cfg['scala']}, Hadoop client {hadoop_client})",
        license_jar=core,
        resolved=[],
        how=(
            f"jars/, bin/, sbin/spark-daemon.sh, python/lib/ and licenses/ come from the pyspark=={version} "
            "wheel built by pip from the PyPI sdist; python/pyspark/ is the package's Python source. "
            "sbin/start-master.sh, stop-master.sh, start-worker.sh, stop-worker.sh, conf/*.template "
            "and RELEASE were written for the FMS lab (the wheel omits them). Not included: "
            "examples/, data/, yarn/, kubernetes/, R/, start-all.sh/start-workers.sh (ssh fan-out)."
        ),
    )
    with step(f"spark: packing {root.name}.tgz"):
        write_tarball(root, outputs(ctx)[0], epoch=ctx.epoch, level=ctx.gzip_level)
    shutil.rmtree(root.parent)
    return {"wheel": wheel.name, "files": files, "py4j": py4j[0].name}
