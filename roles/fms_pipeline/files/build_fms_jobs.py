#!/usr/bin/env python3
"""Build the fms_jobs wheel and the Spark executors' zip on the control machine, reproducibly.

    build_fms_jobs.py --source jobs/ --out build/fms-jobs [--constraint setuptools==X] [--index-url URL]

The sources (``pyproject.toml`` and the ``fms_jobs`` package, caches excluded)
are hashed; the outputs live in ``<out>/<digest>/``. When that directory is
complete nothing is built and ``"changed": false`` is reported, so a second run
changes nothing. Otherwise the sources are copied to a scratch directory (the
source tree is never written to) and built with ``pip wheel`` under a fixed
``SOURCE_DATE_EPOCH`` and a pinned build backend: the same sources give the same
wheel bytes on every control machine. The zip holds the wheel's ``fms_jobs``
files with fixed timestamps (``--py-files`` needs a .zip; Spark ignores .whl).

Prints one JSON object: changed, version, source_sha256, wheel, wheel_sha256, zip, zip_sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "fms_jobs"
EPOCH = 315532800  # 1980-01-01T00:00:00Z, the earliest time a zip entry can carry
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
KEEP_BUILDS = 5
EXCLUDED_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


def source_files(source: Path) -> list[Path]:
    files = [source / "pyproject.toml"]
    for root, dirs, names in os.walk(source / PACKAGE):
        dirs[:] = sorted(d for d in dirs if d not in EXCLUDED_DIRS and not d.endswith(".egg-info"))
        files += [Path(root) / n for n in sorted(names) if not n.endswith((".pyc", ".pyo"))]
    return files


def source_digest(source: Path, constraints: list[str]) -> str:
    h = hashlib.sha256()
    for c in constraints:
        h.update(f"constraint {c}\n".encode())
    for f in source_files(source):
        rel = f.relative_to(source).as_posix()
        data = f.read_bytes()
        h.update(f"{rel}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def build_wheel(source: Path, scratch: Path, constraints: list[str], index_url: str | None) -> Path:
    src = scratch / "src"
    src.mkdir()
    for f in source_files(source):
        dest = src / f.relative_to(source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest)
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(EPOCH), PIP_DISABLE_PIP_VERSION_CHECK="1")
    if constraints:
        cfile = scratch / "constraints.txt"
        cfile.write_text("\n".join(constraints) + "\n", encoding="utf-8")
        env["PIP_CONSTRAINT"] = str(cfile)  # applies to the isolated build environment too
    if index_url:
        env["PIP_INDEX_URL"] = index_url
    wheels = scratch / "wheels"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(wheels), str(src)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(
            f"pip wheel failed (rc={result.returncode}):\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    found = sorted(wheels.glob(f"{PACKAGE}-*.whl"))
    if len(found) != 1:
        raise SystemExit(f"expected one {PACKAGE} wheel in {wheels}, found {[p.name for p in found]}")
    return found[0]


def wheel_to_zip(wheel: Path, dest: Path) -> None:
    """The package files of the wheel, sorted, with fixed timestamps and modes."""
    with zipfile.ZipFile(wheel) as whl, zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as out:
        for name in sorted(n for n in whl.namelist() if n.startswith(f"{PACKAGE}/") and not n.endswith("/")):
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            out.writestr(info, whl.read(name))


def prune(out: Path, keep: str) -> None:
    builds = sorted(
        (d for d in out.iterdir() if d.is_dir() and len(d.name) == 64 and d.name != keep),
        key=lambda d: d.stat().st_mtime,
        reverse=True,
    )
    for old in builds[KEEP_BUILDS - 1 :]:
        shutil.rmtree(old, ignore_errors=True)


def describe(target: Path, digest: str, changed: bool) -> dict[str, object]:
    wheel = next(target.glob(f"{PACKAGE}-*.whl"))
    zipped = target / f"{PACKAGE}.zip"
    return {
        "changed": changed,
        "version": wheel.name.split("-")[1],
        "source_sha256": digest,
        "wheel": str(wheel),
        "wheel_sha256": sha256(wheel),
        "zip": str(zipped),
        "zip_sha256": sha256(zipped),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--source", required=True, type=Path, help="directory holding pyproject.toml and fms_jobs/"
    )
    p.add_argument("--out", required=True, type=Path, help="build directory on the control machine")
    p.add_argument("--constraint", action="append", default=[], help="pin for the build backend (repeatable)")
    p.add_argument("--index-url", default=None, help="package index for the build backend")
    a = p.parse_args(argv)
    source = a.source.resolve()
    if not (source / "pyproject.toml").is_file() or not (source / PACKAGE).is_dir():
        print(f"build_fms_jobs: {source} holds no pyproject.toml and {PACKAGE}/", file=sys.stderr)
        return 1
    out = a.out.resolve()
    digest = source_digest(source, a.constraint)
    target = out / digest
    done = target / "COMPLETE"
    if done.is_file():
        print(json.dumps(describe(target, digest, changed=False)))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".build-", dir=out) as tmp:
        scratch = Path(tmp)
        wheel = build_wheel(source, scratch, a.constraint, a.index_url)
        staged = scratch / "result"
        staged.mkdir()
        shutil.copyfile(wheel, staged / wheel.name)
        wheel_to_zip(wheel, staged / f"{PACKAGE}.zip")
        (staged / "COMPLETE").write_text(digest + "\n", encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        staged.rename(target)
    prune(out, digest)
    print(json.dumps(describe(target, digest, changed=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
