"""The Debian packages and apt indexes lab hosts downloaded, kept for the next lab's hosts.

On AWS a VPC endpoint or a regional mirror makes `apt` fast; on the lab every new host
fetched the same packages (JDK, baseline tools) and the same indexes from the Debian
mirror again, eleven hosts at once. This cache gives new hosts the downloads only:

- a host is still bare when it boots (nothing is installed; `site.yml` installs every
  package as on a new instance);
- its /var/cache/apt/archives holds hard links to the cached .deb files: `apt-get` uses
  one only when its size and hash match the signed index of this run, and downloads
  whatever is missing or different;
- its /var/lib/apt/lists holds the cached indexes with their own times, marked stale
  (the lists directory's time is the epoch) so the apt module's `cache_valid_time`
  still runs `apt update`, which then asks the mirror only for what changed.

`down` harvests what the hosts downloaded back into the cache
($FMS_CACHE_DIR/apt/). Files no host used for PRUNE_AFTER_S are removed then.
FMS_LAB_PACKAGE_CACHE=0 turns it off (a host then downloads everything itself).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from . import progress
from .state import cache_dir, file_lock

ARCHIVES = Path("var/cache/apt/archives")
LISTS = Path("var/lib/apt/lists")
PRUNE_AFTER_S = 30 * 86400
LOCK_TIMEOUT_S = 120.0
# apt's own working files, never part of a cache
_SKIP = {"lock", "partial", "auxfiles"}


def enabled() -> bool:
    return os.environ.get("FMS_LAB_PACKAGE_CACHE", "1") != "0"


def cache_root() -> Path:
    return cache_dir() / "apt"


def _dirs_like(image: Path, upper: Path, rel: Path) -> Path:
    """Create upper/rel and its parents with the image's owner and mode: an overlay shows
    a directory that exists in the upper layer with the upper layer's attributes, and apt
    checks who owns its cache directories."""
    parts = rel.parts
    for i in range(1, len(parts) + 1):
        sub = Path(*parts[:i])
        target, model = upper / sub, image / sub
        if target.is_dir():
            continue
        target.mkdir()
        if model.is_dir():
            st = model.stat()
            os.chown(target, st.st_uid, st.st_gid)
            os.chmod(target, st.st_mode & 0o7777)
    return upper / rel


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem: a copy costs the disk, not the download
        shutil.copy2(src, dst)


def seed(image: Path, upper: Path) -> int:
    """Give a new host's (unmounted) overlay upper layer the cached downloads; returns the
    number of .deb files it got."""
    root = cache_root()
    if not enabled() or not root.is_dir():
        return 0
    upper.mkdir(parents=True, exist_ok=True)
    debs = sorted((root / ARCHIVES.name).glob("*.deb"))
    if debs:
        archives = _dirs_like(image, upper, ARCHIVES)
        for deb in debs:
            _link_or_copy(deb, archives / deb.name)
    cached_lists = root / LISTS.name
    indexes = [p for p in sorted(cached_lists.glob("*")) if p.is_file() and p.name not in _SKIP]
    if indexes:
        lists = _dirs_like(image, upper, LISTS)
        for index in indexes:
            shutil.copy2(index, lists / index.name)  # apt rewrites these in place: never a link
        os.utime(lists, (0, 0))  # stale for cache_valid_time: `apt update` still runs
    return len(debs)


def _newest_index(lists: Path) -> float:
    return max((p.stat().st_mtime for p in lists.glob("*InRelease")), default=0.0)


def harvest(upper: Path) -> int:
    """Add what a host downloaded to the cache (before the host is removed); returns the
    number of .deb files the cache did not have."""
    if not enabled():
        return 0
    root = cache_root()
    added = 0
    with file_lock(root / ".lock", f"the package cache {root} stayed locked", LOCK_TIMEOUT_S):
        archives = root / ARCHIVES.name
        archives.mkdir(parents=True, exist_ok=True)
        now = time.time()
        for deb in sorted((upper / ARCHIVES).glob("*.deb")):
            cached = archives / deb.name
            if not cached.exists():
                tmp = archives / f".{deb.name}.tmp"
                tmp.unlink(missing_ok=True)
                _link_or_copy(deb, tmp)
                os.replace(tmp, cached)
                added += 1
            os.utime(cached, (now, now))  # used by this lab: kept by the prune below
        for stale in archives.glob("*.deb"):
            if now - stale.stat().st_mtime > PRUNE_AFTER_S:
                stale.unlink()
        host_lists, cached_lists = upper / LISTS, root / LISTS.name
        if _newest_index(host_lists) > _newest_index(cached_lists):
            fresh = root / ".lists.new"
            shutil.rmtree(fresh, ignore_errors=True)
            fresh.mkdir()
            for index in host_lists.glob("*"):
                if index.is_file() and index.name not in _SKIP:
                    shutil.copy2(index, fresh / index.name)
            shutil.rmtree(cached_lists, ignore_errors=True)
            os.replace(fresh, cached_lists)
    if added:
        progress.step(f"package cache: {added} new .deb files from {upper.parent.name}")
    return added
