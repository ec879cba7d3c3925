"""Input manifests: a build is skipped when its inputs and recorded outputs are unchanged.

The input fingerprint covers the pinned versions, the templates and the builder's own
source, so editing any of them triggers a rebuild. Outputs are checked by size and
modification time (cheap), not by re-hashing hundreds of megabytes on every run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

FORMAT = 1


def fingerprint(inputs: Mapping[str, Any]) -> str:
    """Stable sha256 of a JSON-serialisable mapping."""
    blob = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def files_digest(paths: Iterable[Path], root: Path | None = None) -> str:
    """sha256 over the names and contents of `paths` (directories are walked)."""
    hasher = hashlib.sha256()
    expanded: list[Path] = []
    for path in paths:
        expanded.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    for path in sorted(expanded):
        name = str(path.relative_to(root)) if root else path.name
        hasher.update(name.encode("utf-8") + b"\0")
        hasher.update(path.read_bytes())
        hasher.update(b"\0")
    return hasher.hexdigest()


def _stat(path: Path) -> dict[str, int]:
    info = path.stat()
    return {"size": info.st_size, "mtime_ns": info.st_mtime_ns}


class Manifest:
    """One JSON file per build target under <work>/manifests/."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def is_current(self, inputs_fingerprint: str) -> bool:
        data = self.load()
        if data.get("format") != FORMAT or data.get("inputs") != inputs_fingerprint:
            return False
        outputs = data.get("outputs")
        if not isinstance(outputs, dict) or not outputs:
            return False
        for name, recorded in outputs.items():
            path = Path(name)
            if not path.is_file() or _stat(path) != recorded:
                return False
        return True

    def record(self, inputs_fingerprint: str, outputs: Iterable[Path], details: Mapping[str, Any]) -> None:
        data = {
            "format": FORMAT,
            "inputs": inputs_fingerprint,
            "outputs": {str(p): _stat(p) for p in outputs},
            "details": dict(details),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(self.path)
