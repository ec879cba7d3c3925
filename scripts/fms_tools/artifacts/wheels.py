"""Fetch a wheel into $FMS_CACHE_DIR/wheels with pip (pip's own cache makes reruns instant)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .config import Paths


def ensure_wheel(paths: Paths, project: str, version: str) -> Path:
    """Return the path of `<project>-<version>-*.whl`, building/downloading it if needed.

    pyspark is published on PyPI as an sdist only; `pip wheel` builds the (pure Python)
    wheel once and pip's cache keeps it.
    """
    pattern = f"{project.replace('-', '_')}-{version}-*.whl"
    found = sorted(paths.wheels.glob(pattern))
    if found:
        return found[0]
    paths.wheels.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("PIP_CACHE_DIR", str(paths.cache / "pip"))
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        f"{project}=={version}",
        "-w",
        str(paths.wheels),
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"pip wheel {project}=={version} failed:\n{result.stderr[-3000:]}")
    found = sorted(paths.wheels.glob(pattern))
    if not found:
        raise SystemExit(f"pip wheel succeeded but no {pattern} in {paths.wheels}")
    return found[0]
