"""Deterministic tar.gz archives: sorted members, fixed mtime, root-owned, normalised modes."""

from __future__ import annotations

import gzip
import os
import tarfile
from pathlib import Path


def _members(root: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        found.append(base)
        found.extend(base / name for name in sorted(filenames))
    return found


def _normalise(info: tarfile.TarInfo, epoch: int) -> tarfile.TarInfo:
    info.mtime = epoch
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if info.isdir():
        info.mode = 0o755
    elif info.issym():
        info.mode = 0o777
    else:
        info.mode = 0o755 if info.mode & 0o111 else 0o644
    return info


def write_tarball(source: Path, destination: Path, *, epoch: int, level: int = 6) -> Path:
    """Pack directory `source` as `<source.name>/...` into `destination` atomically."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(f".{destination.name}.tmp")
    with (
        tmp.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=level, mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        for path in _members(source):
            arcname = str(Path(source.name) / path.relative_to(source))
            info = _normalise(tar.gettarinfo(str(path), arcname=arcname), epoch)
            if info.isfile():
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    tmp.replace(destination)
    return destination
