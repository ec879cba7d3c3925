"""What every builder receives: paths, pinned versions and build settings."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Paths


@dataclass(frozen=True)
class Context:
    paths: Paths
    versions: dict[str, Any]

    @property
    def epoch(self) -> int:
        return int(self.versions["build"]["source_date_epoch"])

    @property
    def gzip_level(self) -> int:
        return int(self.versions["build"]["gzip_level"])

    def fresh_staging(self, name: str) -> Path:
        """An empty staging directory <work>/staging/<name>."""
        path = self.paths.staging / name
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path
