#!/usr/bin/env bash
# Creates (once per requirements.txt and package-definition content) the project's virtualenv
# in the shared cache and links it as .venv, so a fresh clone reuses a warm install.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="${FMS_CACHE_DIR:-/var/cache/fms-platform}"
python="${PYTHON:-python3}"
hash="$(cat "$repo/requirements.txt" "$repo/jobs/pyproject.toml" "$repo/scripts/pyproject.toml" 2>/dev/null \
  | sha256sum | cut -c1-16)"
venv="$cache/venv/$hash"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  echo "[bootstrap] creating Python environment $venv (first run downloads ~1 GB of wheels)" >&2
  rm -rf "$venv"
  mkdir -p "$cache/venv" "$cache/pip"
  "$python" -m venv "$venv"
  PIP_CACHE_DIR="$cache/pip" "$venv/bin/pip" install -q --upgrade pip==24.3.1
  PIP_CACHE_DIR="$cache/pip" "$venv/bin/pip" install -q -r "$repo/requirements.txt"
  touch "$venv/.complete"
fi
# The jobs package and the tools package (scripts/: fms-lab, fms-artifacts, fms-bench, ...) are
# installed editable from this checkout every time: cheap, and the venv may be shared by several clones.
for package in jobs scripts; do
  [ -f "$repo/$package/pyproject.toml" ] || continue
  "$venv/bin/pip" install -q --no-deps --no-build-isolation -e "$repo/$package" >/dev/null 2>&1 \
    || PIP_CACHE_DIR="$cache/pip" "$venv/bin/pip" install -q --no-deps -e "$repo/$package"
done
ln -sfn "$venv" "$repo/.venv"
