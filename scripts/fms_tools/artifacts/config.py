"""Pinned versions and the cache / mirror directory layout."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
VERSIONS_FILE = PACKAGE_DIR / "versions.yml"
TEMPLATES_DIR = PACKAGE_DIR / "templates"
DEFAULT_CACHE_DIR = "/var/cache/fms-platform"


def load_versions(path: Path = VERSIONS_FILE) -> dict[str, Any]:
    """Return the parsed versions.yml."""
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - environment problem
        raise SystemExit(
            "PyYAML is required: run with the project venv (.venv/bin/python) "
            "or install the Debian package python3-yaml"
        ) from exc
    with path.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    if not isinstance(data, dict):
        raise SystemExit(f"{path}: expected a mapping at the top level")
    return data


@dataclass(frozen=True)
class Paths:
    """Where the builder reads caches and writes the mirror."""

    cache: Path  # $FMS_CACHE_DIR
    mirror: Path  # served tree: apache/, maven2/, github/
    work: Path  # staging areas, manifests, locks
    m2: Path  # Maven local repository (shared cache)

    @property
    def apache(self) -> Path:
        return self.mirror / "apache"

    @property
    def maven2(self) -> Path:
        return self.mirror / "maven2"

    @property
    def github(self) -> Path:
        return self.mirror / "github"

    @property
    def manifests(self) -> Path:
        return self.work / "manifests"

    @property
    def staging(self) -> Path:
        return self.work / "staging"

    @property
    def locks(self) -> Path:
        return self.work / "locks"

    @property
    def wheels(self) -> Path:
        return self.cache / "wheels"

    @property
    def go(self) -> Path:
        return self.cache / "go"


def cache_dir() -> Path:
    return Path(os.environ.get("FMS_CACHE_DIR") or DEFAULT_CACHE_DIR)


def resolve_paths(mirror: Path | None = None) -> Paths:
    """Paths for this run; `mirror` overrides $FMS_CACHE_DIR/mirror."""
    cache = cache_dir()
    return Paths(
        cache=cache,
        mirror=(mirror or cache / "mirror").resolve(),
        work=cache / "artifacts",
        m2=cache / "m2",
    )
