"""The cached Debian 12 root filesystem every lab host boots from.

Built once with `debootstrap --variant=minbase` plus the few packages a host
needs to be managed (systemd, sshd, python3 for Ansible, iproute2, CA
certificates, sudo, curl, gnupg), then customised for containers. It lives in
$FMS_CACHE_DIR/rootfs/<key>/, where the key hashes everything that shapes the
image, so a changed package list builds a new image and an unchanged one is
reused by every clone and every bring-up.

Hosts never write to the image: each host mounts an overlay (lower = image,
upper = the host's own directory in the lab state dir), which costs no copy
and keeps per-host changes in one place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from . import progress
from .state import cache_dir, file_lock

SUITE = "bookworm"
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "iproute2",
    "openssh-server",
    "python3",
    "python3-apt",
    "ca-certificates",
    "sudo",
    "curl",
    "gnupg",
    "procps",
    "iputils-ping",
)
# Bump when the customisation below changes, so caches rebuild.
IMAGE_REVISION = 2
DEBOOTSTRAP_TIMEOUT_S = 1800
IDLE_NOISE_UNITS = (
    "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "e2scrub_reap.service", "fstrim.timer",
)  # fmt: skip
# Extra CAs this machine trusts (e.g. an egress proxy's) are trusted by the hosts too,
# so HTTPS from a host behaves as it does on the lab machine.
HOST_EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")


def debian_mirror() -> str:
    return os.environ.get("FMS_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def debian_security_mirror() -> str:
    return os.environ.get("FMS_DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security")


def _extra_cas() -> list[Path]:
    if not HOST_EXTRA_CA_DIR.is_dir():
        return []
    return sorted(p for p in HOST_EXTRA_CA_DIR.rglob("*.crt") if p.is_file())


def image_key() -> str:
    h = hashlib.sha256()
    h.update(
        json.dumps(
            [SUITE, sorted(PACKAGES), IMAGE_REVISION, debian_mirror(), debian_security_mirror()]
        ).encode()
    )
    for ca in _extra_cas():
        h.update(ca.name.encode() + b"\0" + ca.read_bytes())
    return f"{SUITE}-{h.hexdigest()[:16]}"


def rootfs_root() -> Path:
    return cache_dir() / "rootfs"


def image_path(key: str | None = None) -> Path:
    return rootfs_root() / (key or image_key())


def ensure_image() -> Path:
    """Return the cached image directory, building it first if needed."""
    key = image_key()
    final = image_path(key)
    if final.is_dir():
        progress.step(f"rootfs: cached image {final}")
        return final
    # Another clone building the same image: wait for it (bounded), then use its result.
    lock = rootfs_root() / ".lock"
    with file_lock(lock, f"another image build holds {lock} for too long", DEBOOTSTRAP_TIMEOUT_S + 300):
        if final.is_dir():
            return final
        started = time.monotonic()
        tmp = rootfs_root() / f".build-{key}"
        _remove_tree(tmp)
        log = rootfs_root() / f"{key}.build.log"
        progress.step(f"rootfs: building {key} with debootstrap (first time only; log {log})")
        debs = rootfs_root() / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        with log.open("w") as fh:
            proc = subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(PACKAGES)}",
                    f"--cache-dir={debs}",
                    SUITE,
                    str(tmp),
                    debian_mirror(),
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
                timeout=DEBOOTSTRAP_TIMEOUT_S,
                check=False,
            )
        if proc.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise RuntimeError(f"debootstrap failed ({proc.returncode}); last lines of {log}:\n{tail}")
        progress.step("rootfs: customising the image for containers")
        _customise(tmp)
        manifest = {
            "key": key,
            "suite": SUITE,
            "packages": sorted(PACKAGES),
            "revision": IMAGE_REVISION,
            "built_in_s": round(time.monotonic() - started, 1),
            "built_at": time.time(),
        }
        (rootfs_root() / f"{key}.json").write_text(json.dumps(manifest, indent=2) + "\n")
        os.rename(tmp, final)  # atomic: an image directory exists only when complete
        progress.step(f"rootfs: image ready in {manifest['built_in_s']}s")
        return final


def _chroot(root: Path, *cmd: str) -> None:
    proc = subprocess.run(
        ["chroot", str(root), *cmd],
        timeout=300,
        text=True,
        check=False,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"chroot {root} {' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}")


def _write(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    path = root / rel.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)


def _customise(root: Path) -> None:
    # Apt sources: the release, its updates and security, as on a Debian 12 AMI.
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    _write(
        root,
        "/etc/apt/sources.list.d/debian.sources",
        f"Types: deb\nURIs: {debian_mirror()}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        f"Types: deb\nURIs: {debian_security_mirror()}\nSuites: {SUITE}-security\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
    )
    _write(root, "/etc/apt/apt.conf.d/90fms-lab", 'APT::Install-Recommends "false";\n')
    for ca in _extra_cas():
        shutil.copy2(ca, root / "usr/local/share/ca-certificates" / ca.name)
    _chroot(root, "update-ca-certificates")
    # Identity is per host: no shared ssh host keys, machine-id written per host.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    _write(root, "/etc/machine-id", "")
    _write(
        root,
        "/etc/ssh/sshd_config.d/10-fms-lab.conf",
        "# Lab hosts: key-only root login; host keys are generated per host.\n"
        "HostKey /etc/ssh/ssh_host_ed25519_key\nPasswordAuthentication no\n"
        "PermitRootLogin prohibit-password\nUseDNS no\n",
    )
    _write(root, "/etc/default/locale", "LANG=C.UTF-8\n")
    # Static addressing via systemd-networkd (the per-host .network file names the address).
    _chroot(root, "systemctl", "enable", "systemd-networkd.service", "ssh.service")
    # Background jobs that make no sense in a container or would race Ansible for the apt lock.
    _chroot(root, "systemctl", "disable", *IDLE_NOISE_UNITS)
    # debootstrap copied the build machine's resolv.conf; each host gets its own.
    _write(root, "/etc/resolv.conf", "")
    # The journal stays in memory and small: hosts are disposable and RAM is the budget.
    _write(
        root,
        "/etc/systemd/journald.conf.d/10-fms-lab.conf",
        "[Journal]\nStorage=volatile\nRuntimeMaxUse=32M\n",
    )
    # Downloaded packages are in the debootstrap cache already.
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()


def _remove_tree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
