"""Install the launch scripts and default configs shipped under templates/<family>/."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from .config import TEMPLATES_DIR

RENDER_SUFFIX = ".tmpl"
EXECUTABLE_DIRS = {"bin", "sbin", "libexec"}


def template_dir(family: str) -> Path:
    return TEMPLATES_DIR / family


def _render(text: str, variables: Mapping[str, str]) -> str:
    for key, value in variables.items():
        text = text.replace("@@" + key + "@@", value)
    return text


def install(family: str, destination: Path, variables: Mapping[str, str]) -> list[Path]:
    """Copy templates/<family>/ into `destination`.

    Files ending in .tmpl are rendered (`@@KEY@@` -> value) and lose the suffix. Files in
    bin/, sbin/ and libexec/ (and *.sh) are made executable.
    """
    source = template_dir(family)
    written: list[Path] = []
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        relative = path.relative_to(source)
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.name.endswith(RENDER_SUFFIX):
            target = target.with_name(path.name[: -len(RENDER_SUFFIX)])
            target.write_text(_render(path.read_text(encoding="utf-8"), variables), encoding="utf-8")
        else:
            shutil.copyfile(path, target)
        executable = relative.parts[0] in EXECUTABLE_DIRS or target.suffix == ".sh"
        target.chmod(0o755 if executable else 0o644)
        written.append(target)
    return written
