"""Parse published checksum files (GNU coreutils, BSD, Apache ``gpg --print-md``).

Used by roles/common/tasks/artifact.yml, the one fetch-and-verify code path for
every tarball and jar the roles download (Kafka, Hadoop, Spark, Maven jars).
"""

from __future__ import annotations

import re

from ansible.errors import AnsibleFilterError

DIGEST_HEX_LENGTH = {"md5": 32, "sha1": 40, "sha256": 64, "sha384": 96, "sha512": 128}

_BSD = re.compile(r"^(?P<algo>[A-Za-z0-9-]+)\s*\((?P<name>[^)]+)\)\s*=\s*(?P<hex>[0-9A-Fa-f]+)\s*$")
_GNU = re.compile(r"^(?P<hex>[0-9A-Fa-f]+)\s+[*]?(?P<name>\S.*?)\s*$")
_APACHE = re.compile(r"^(?P<name>[^\s:]+)\s*:\s*(?P<rest>[0-9A-Fa-f\s]+)$", re.DOTALL)


def _basename(name: str) -> str:
    return name.strip().lstrip("*").replace("\\", "/").rsplit("/", 1)[-1]


def _check(hexdigest: str, algorithm: str | None, source: str) -> str:
    digest = hexdigest.lower()
    want = DIGEST_HEX_LENGTH.get((algorithm or "").lower())
    if want is not None and len(digest) != want:
        raise AnsibleFilterError(
            f"checksum for {source!r} has {len(digest)} hex digits, expected {want} for {algorithm}"
        )
    return digest


def fms_checksum(content, filename, algorithm=None):
    """Return the lower-case hex digest for ``filename`` found in ``content``.

    Accepted layouts:
      * GNU coreutils: ``<hex>  <file>`` or ``<hex> *<file>`` (one or many lines);
      * a bare ``<hex>`` (Maven ``.sha1`` files, sometimes followed by the name);
      * BSD: ``SHA512 (<file>) = <hex>``;
      * Apache ``gpg --print-md``: ``<file>: 1A2B 3C4D ...`` wrapped over lines.
    """
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    if not isinstance(content, str) or not content.strip():
        raise AnsibleFilterError(f"empty checksum file for {filename!r}")
    name = _basename(str(filename))
    text = content.strip()

    # Apache gpg --print-md style: "name: HEX HEX\n   HEX HEX" (name appears once).
    match = _APACHE.match(text)
    if match and _basename(match.group("name")) == name:
        return _check(re.sub(r"\s+", "", match.group("rest")), algorithm, name)

    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    candidates = []
    for line in lines:
        bsd = _BSD.match(line)
        if bsd:
            if _basename(bsd.group("name")) == name:
                return _check(bsd.group("hex"), algorithm, name)
            continue
        gnu = _GNU.match(line)
        if gnu:
            if _basename(gnu.group("name")) == name:
                return _check(gnu.group("hex"), algorithm, name)
            continue
        if re.fullmatch(r"[0-9A-Fa-f]+", line):
            candidates.append(line)
    # A file that holds only a digest (Maven .sha1 / .sha512) applies to the
    # artifact it sits beside.
    if len(candidates) == 1 and len(lines) == 1:
        return _check(candidates[0], algorithm, name)
    raise AnsibleFilterError(f"no checksum for {name!r} in the published checksum file")


class FilterModule:
    def filters(self):
        return {"fms_checksum": fms_checksum}
