"""Small helpers for looking inside jars (class presence, bundled resources)."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterable
from pathlib import Path

_RUN_CLASS = re.compile(
    r"(?:kafka-run-class\.sh|hadoop_java_exec|CLASS=)\"?\s*(?:\$EXTRA_ARGS\s+)?([A-Za-z_$][\w.$]+)"
)


def class_index(jars: Iterable[Path]) -> set[str]:
    """Fully qualified class names contained in `jars`."""
    names: set[str] = set()
    for jar in jars:
        with zipfile.ZipFile(jar) as archive:
            for entry in archive.namelist():
                if entry.endswith(".class"):
                    names.add(entry[:-6].replace("/", "."))
    return names


def missing_classes(wanted: Iterable[str], jars: Iterable[Path]) -> list[str]:
    index = class_index(jars)
    return sorted(name for name in set(wanted) if name not in index)


def extract_prefix(jar: Path, prefix: str, destination: Path) -> int:
    """Extract the entries of `jar` under `prefix` (e.g. 'webapps/') into `destination`."""
    count = 0
    with zipfile.ZipFile(jar) as archive:
        for info in archive.infolist():
            if not info.filename.startswith(prefix) or info.is_dir():
                continue
            target = destination / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(info))
            count += 1
    return count


def read_entry(jar: Path, name: str) -> str | None:
    with zipfile.ZipFile(jar) as archive:
        try:
            return archive.read(name).decode("utf-8", errors="replace")
        except KeyError:
            return None


def classes_named_in_scripts(scripts: Iterable[Path]) -> set[str]:
    """Main classes referenced by launcher scripts (…kafka-run-class.sh CLASS, CLASS=…)."""
    found: set[str] = set()
    for script in scripts:
        for match in _RUN_CLASS.finditer(script.read_text(encoding="utf-8")):
            name = match.group(1)
            if "." in name and not name.startswith("$"):
                found.add(name)
    return found
