"""The lab's package cache: new hosts get the downloads, never an installed package."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from fms_tools.lab import package_cache
from fms_tools.lab.package_cache import ARCHIVES, LISTS


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """The parts of the cached rootfs the cache touches, with apt's owners and modes."""
    img = tmp_path / "image"
    (img / ARCHIVES / "partial").mkdir(parents=True)
    (img / LISTS / "partial").mkdir(parents=True)
    os.chmod(img / ARCHIVES, 0o755)
    os.chown(img / ARCHIVES / "partial", 100, 0)  # _apt owns partial/ on Debian
    os.chmod(img / LISTS, 0o750)
    return img


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FMS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("FMS_LAB_PACKAGE_CACHE", raising=False)
    return tmp_path / "cache" / "apt"


def _host_downloads(upper: Path, debs: dict[str, bytes], lists: dict[str, bytes], at: float) -> None:
    (upper / ARCHIVES / "partial").mkdir(parents=True)
    (upper / LISTS / "partial").mkdir(parents=True)
    for name, body in debs.items():
        (upper / ARCHIVES / name).write_bytes(body)
    (upper / ARCHIVES / "partial" / "half.deb").write_bytes(b"interrupted")
    (upper / ARCHIVES / "lock").write_bytes(b"")
    for name, body in lists.items():
        (upper / LISTS / name).write_bytes(body)
        os.utime(upper / LISTS / name, (at, at))


def test_a_first_lab_has_nothing_to_seed(image: Path, tmp_path: Path) -> None:
    upper = tmp_path / "host" / "upper"
    assert package_cache.seed(image, upper) == 0
    assert not (upper / ARCHIVES).exists()


def test_what_one_host_downloaded_is_linked_into_the_next_hosts_archives(image: Path, tmp_path: Path) -> None:
    first = tmp_path / "first" / "upper"
    _host_downloads(
        first,
        {
            "openjdk-17-jre-headless_17.0.17+10-1~deb12u1_amd64.deb": b"jdk",
            "curl_7.88.1-10_amd64.deb": b"curl",
        },
        {
            "m_dists_bookworm_InRelease": b"release-1",
            "mirror_dists_bookworm_main_binary-amd64_Packages": b"p1",
        },
        at=time.time() - 600,
    )
    assert package_cache.harvest(first) == 2
    assert package_cache.harvest(first) == 0, "a second harvest of the same files adds nothing"

    second = tmp_path / "second" / "upper"
    assert package_cache.seed(image, second) == 2
    jdk = second / ARCHIVES / "openjdk-17-jre-headless_17.0.17+10-1~deb12u1_amd64.deb"
    assert jdk.read_bytes() == b"jdk"
    assert jdk.stat().st_ino == (first / ARCHIVES / jdk.name).stat().st_ino, "a hard link, not a copy"
    assert not (second / ARCHIVES / "half.deb").exists() and not (second / ARCHIVES / "lock").exists()
    assert not (second / ARCHIVES / "partial" / "half.deb").exists()
    # the overlay shows upper directories with the upper's attributes: they must be apt's
    assert (second / ARCHIVES).stat().st_mode & 0o7777 == 0o755
    assert (second / LISTS).stat().st_mode & 0o7777 == 0o750
    # the indexes keep their own times (apt's If-Modified-Since) and the directory looks stale,
    # so the apt module's cache_valid_time still runs `apt update`
    index = second / LISTS / "m_dists_bookworm_InRelease"
    assert index.read_bytes() == b"release-1"
    assert index.stat().st_mtime == pytest.approx((first / LISTS / index.name).stat().st_mtime)
    assert index.stat().st_ino != (first / LISTS / index.name).stat().st_ino, "indexes are copied"
    assert (second / LISTS).stat().st_mtime == 0


def test_the_newest_indexes_win_and_unused_packages_age_out(image: Path, tmp_path: Path, cache: Path) -> None:
    now = time.time()
    newer, older = tmp_path / "newer" / "upper", tmp_path / "older" / "upper"
    _host_downloads(newer, {"a_2_amd64.deb": b"a2"}, {"m_InRelease": b"new"}, at=now - 60)
    _host_downloads(
        older, {"a_1_amd64.deb": b"a1"}, {"m_InRelease": b"old", "m_Packages": b"old"}, at=now - 7200
    )
    package_cache.harvest(newer)
    package_cache.harvest(older)
    assert (cache / "lists" / "m_InRelease").read_bytes() == b"new"
    assert not (cache / "lists" / "m_Packages").exists(), "the lists are one host's set, never a mix"
    assert {p.name for p in (cache / "archives").glob("*.deb")} == {"a_1_amd64.deb", "a_2_amd64.deb"}

    aged = now - package_cache.PRUNE_AFTER_S - 60
    os.utime(cache / "archives" / "a_1_amd64.deb", (aged, aged))
    package_cache.harvest(newer)
    assert {p.name for p in (cache / "archives").glob("*.deb")} == {"a_2_amd64.deb"}


def test_turned_off_it_neither_seeds_nor_keeps(image: Path, tmp_path: Path, monkeypatch) -> None:
    host = tmp_path / "host" / "upper"
    _host_downloads(host, {"a_1_amd64.deb": b"a"}, {"m_InRelease": b"r"}, at=time.time())
    package_cache.harvest(host)
    monkeypatch.setenv("FMS_LAB_PACKAGE_CACHE", "0")
    assert package_cache.harvest(host) == 0
    assert package_cache.seed(image, tmp_path / "next" / "upper") == 0
    assert not (tmp_path / "next" / "upper" / ARCHIVES).exists()
