"""Build registry: target name -> builder module, with locking, caching and checksums."""

from __future__ import annotations

import fcntl
import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from . import checksums, hadoop, kafka, maven_jmx, maven_spark, prometheus, spark
from .config import PACKAGE_DIR
from .context import Context
from .manifest import Manifest, files_digest, fingerprint
from .progress import say
from .templates import template_dir

# Order matters for `all`: cheap and most-needed first.
TARGETS: dict[str, ModuleType] = {
    "kafka": kafka,
    "hadoop": hadoop,
    "spark": spark,
    "maven": maven_spark,
    "jmx": maven_jmx,
    "prometheus": prometheus,
}
SHARED_SOURCES = (
    "builders.py",
    "checksums.py",
    "context.py",
    "jars.py",
    "manifest.py",
    "maven.py",
    "maven_mirror.py",
    "notices.py",
    "tarball.py",
    "templates.py",
    "wheels.py",
)


def _module_file(module: ModuleType) -> Path:
    return Path(module.__file__ or "")


def _source_digest(module: ModuleType) -> str:
    family = getattr(module, "TEMPLATE_FAMILY", module.NAME)
    sources = [PACKAGE_DIR / name for name in SHARED_SOURCES]
    sources.append(_module_file(module))
    folder = template_dir(family)
    if folder.is_dir():
        sources.append(folder)
    return files_digest(sources, root=PACKAGE_DIR)


@contextmanager
def _locked(ctx: Context, name: str) -> Iterator[None]:
    ctx.paths.locks.mkdir(parents=True, exist_ok=True)
    with (ctx.paths.locks / f"{name}.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"{name}: another build holds the lock, waiting ...")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def checksum_files(module: ModuleType, ctx: Context) -> list[Path]:
    """Checksum files that accompany the target's outputs."""
    extra = getattr(module, "checksum_outputs", None)
    if extra is not None:
        return list(extra(ctx))
    return [p.with_name(p.name + ".sha512") for p in module.outputs(ctx)]


def manifest_for(name: str, ctx: Context) -> Manifest:
    """One manifest per target and mirror directory (`--mirror` builds are tracked apart)."""
    mirror_key = hashlib.sha256(str(ctx.paths.mirror).encode("utf-8")).hexdigest()[:12]
    return Manifest(ctx.paths.manifests / f"{name}-{mirror_key}.json")


def is_current(name: str, ctx: Context) -> bool:
    return manifest_for(name, ctx).is_current(_inputs_fingerprint(TARGETS[name], ctx))


def _inputs_fingerprint(module: ModuleType, ctx: Context) -> str:
    return fingerprint(
        {"target": module.NAME, "inputs": module.inputs(ctx), "sources": _source_digest(module)}
    )


def run(name: str, ctx: Context, *, force: bool = False) -> dict[str, Any]:
    """Build `name` unless its manifest says the outputs are current. Returns a summary."""
    module = TARGETS[name]
    began = time.monotonic()
    with _locked(ctx, name):
        manifest = manifest_for(name, ctx)
        inputs_fp = _inputs_fingerprint(module, ctx)
        if not force and manifest.is_current(inputs_fp):
            say(f"{name}: up to date ({', '.join(p.name for p in module.outputs(ctx))})")
            return {"target": name, "built": False, "outputs": [str(p) for p in module.outputs(ctx)]}
        say(f"{name}: building")
        details = module.build(ctx)
        outs = list(module.outputs(ctx))
        for path in outs:
            if path.suffix in {".tgz", ".gz"}:
                checksums.write_checksum_file(path, "sha512")
        extra = [Path(p) for p in details.pop("extra_outputs", [])]
        tracked = list(dict.fromkeys(outs + checksum_files(module, ctx) + extra))
        manifest.record(inputs_fp, tracked, details)
        total = sum(p.stat().st_size for p in outs)
        say(f"{name}: built {len(outs)} file(s), {total / 1e6:.1f} MB in {time.monotonic() - began:.1f}s")
        return {"target": name, "built": True, "outputs": [str(p) for p in outs]}
