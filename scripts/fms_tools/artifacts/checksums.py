"""File digests and GNU-format checksum files (`<hex>  <filename>`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20


def digest(path: Path, algorithm: str = "sha512") -> str:
    hasher = hashlib.new(algorithm)
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def write_checksum_file(path: Path, algorithm: str = "sha512") -> Path:
    """Write `<path>.<algorithm>` containing `<hex>  <basename>` and return its path."""
    target = path.with_name(f"{path.name}.{algorithm}")
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(f"{digest(path, algorithm)}  {path.name}\n", encoding="ascii")
    tmp.replace(target)
    return target


def write_bare_checksum(path: Path, algorithm: str = "sha1") -> Path:
    """Write `<path>.<algorithm>` with the bare hex digest (the Maven repository convention)."""
    target = path.with_name(f"{path.name}.{algorithm}")
    target.write_text(digest(path, algorithm), encoding="ascii")
    return target


def parse_checksum_file(checksum_file: Path) -> dict[str, str]:
    """Map file name -> hex digest from a GNU checksum file (or a bare Maven .sha1)."""
    entries: dict[str, str] = {}
    for line in checksum_file.read_text(encoding="ascii").splitlines():
        parts = line.split()
        if not parts:
            continue
        name = parts[-1].lstrip("*") if len(parts) > 1 else checksum_file.name.rsplit(".", 1)[0]
        entries[name] = parts[0].lower()
    return entries


def verify_checksum_file(checksum_file: Path) -> bool:
    """True when every file named in `checksum_file` (same directory) matches its digest."""
    algorithm = checksum_file.suffix.lstrip(".")
    if algorithm not in {"sha1", "sha256", "sha512"}:
        algorithm = "sha256"  # sha256sums.txt
    entries = parse_checksum_file(checksum_file)
    if not entries:
        return False
    for name, expected in entries.items():
        candidate = checksum_file.parent / name
        if not candidate.is_file() or digest(candidate, algorithm) != expected:
            return False
    return True
