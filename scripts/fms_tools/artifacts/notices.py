"""LICENSE / NOTICE files that say how a lab archive was assembled."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from . import jars
from .maven import Artifact

_LICENSE_ENTRIES = ("META-INF/LICENSE", "META-INF/LICENSE.txt", "LICENSE")
_FALLBACK_LICENSE = (
    "Apache License, Version 2.0\nhttps://www.apache.org/licenses/LICENSE-2.0\n\n"
    "The full text ships inside each Apache jar under META-INF/.\n"
)


def write_license_files(
    root: Path,
    *,
    product: str,
    license_jar: Path | None,
    resolved: Sequence[Artifact],
    how: str,
) -> None:
    text = None
    if license_jar is not None and license_jar.is_file():
        for entry in _LICENSE_ENTRIES:
            text = jars.read_entry(license_jar, entry)
            if text:
                break
    (root / "LICENSE").write_text(text or _FALLBACK_LICENSE, encoding="utf-8")
    lines = [
        product,
        "",
        "LAB ASSEMBLY — this is NOT an official Apache release artifact.",
        "It was assembled by the FMS Platform lab (scripts/artifacts.py) from packages published",
        "on public package registries, so that the Ansible roles exercise the same",
        "'download URL + checksum' code path they use against the official Apache mirrors.",
        "",
        how,
        "",
        "Each bundled jar keeps its own META-INF/LICENSE and META-INF/NOTICE files.",
        "",
        "Bundled artifacts (group:artifact:version[:classifier]):",
    ]
    for artifact in sorted(resolved, key=lambda a: (a.coordinate.group, a.coordinate.artifact)):
        c = artifact.coordinate
        lines.append(f"  {c.group}:{c.artifact}:{c.version}" + (f":{c.classifier}" if c.classifier else ""))
    (root / "NOTICE").write_text("\n".join(lines) + "\n", encoding="utf-8")
