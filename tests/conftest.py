"""Shared test setup: make scripts/ importable and fail clearly without tools."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for path in (REPO / "scripts", REPO / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
