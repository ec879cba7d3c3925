"""The lab state directory ($FMS_LAB_DIR, default <repo>/.lab).

    hosts.json            every host the lab created (env, IP, roles, nspawn pid, ...)
    lab.json              per-env network facts, the emulator the lab owns, saved sysctls
    emulator.pid          the emulator `up` started ({pid, pid_start, port}), written at its start
    outputs/<env>.json    Terraform's outputs of the env's last apply (instances, groups, subnets)
    terraform/<env>/      the staged stack and its local state (scripts/fms_tools/fmsops/terraform.py)
    ssh/id_ed25519[.pub]  the lab key (root on every host)
    ssh/known_hosts       the hosts' keys (the lab generates them, so checking stays strict)
    ssh/config            one Host block per lab host (used by `lab ssh` and Ansible)
    logs/                 console log per host, emulator log, mirror server and build logs
    hosts/<name>/         overlay upper/work dirs and the mounted root of each host
    lock                  held by `up` and `down` so two runs never interleave

The directory may hold files of other tools (e.g. CONTRACTS.md); the lab only
removes what it created.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from fms_tools import REPO


def lab_dir() -> Path:
    return Path(os.environ.get("FMS_LAB_DIR") or REPO / ".lab").resolve()


def cache_dir() -> Path:
    return Path(os.environ.get("FMS_CACHE_DIR") or "/var/cache/fms-platform")


def hosts_file() -> Path:
    return lab_dir() / "hosts.json"


def lab_file() -> Path:
    return lab_dir() / "lab.json"


def ssh_dir() -> Path:
    return lab_dir() / "ssh"


def key_path() -> Path:
    return ssh_dir() / "id_ed25519"


def known_hosts_path() -> Path:
    return ssh_dir() / "known_hosts"


def ssh_config_path() -> Path:
    return ssh_dir() / "config"


def logs_dir() -> Path:
    return lab_dir() / "logs"


def host_dir(name: str) -> Path:
    return lab_dir() / "hosts" / name


def outputs_file(env: str) -> Path:
    return lab_dir() / "outputs" / f"{env}.json"


def save_outputs(env: str, outputs: dict[str, Any]) -> None:
    _write(outputs_file(env), outputs)


def load_outputs(env: str) -> dict[str, Any]:
    return _read(outputs_file(env), {})


def remove_outputs(env: str) -> None:
    outputs_file(env).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        outputs_file(env).parent.rmdir()


def host_groups(rec: Mapping[str, Any]) -> list[str]:
    """The inventory groups of a host record: `roles`, or its one `role` (records written before
    `roles` existed have only that)."""
    return list(rec.get("roles") or [rec.get("role")])


def _read(path: Path, default: dict[str, Any]) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)


def load_hosts() -> dict[str, dict[str, Any]]:
    return _read(hosts_file(), {"hosts": {}})["hosts"]


def save_hosts(hosts: dict[str, dict[str, Any]]) -> None:
    _write(hosts_file(), {"hosts": hosts})


def load_lab() -> dict[str, Any]:
    data = _read(lab_file(), {})
    data.setdefault("envs", {})
    return data


def save_lab(data: dict[str, Any]) -> None:
    _write(lab_file(), data)


@contextlib.contextmanager
def file_lock(path: Path, busy: str, timeout_s: float = 0.0) -> Iterator[None]:
    """An exclusive flock on `path`, waiting at most `timeout_s`; then SystemExit(busy)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with open(path, "w") as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise SystemExit(busy) from None
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def locked() -> contextlib.AbstractContextManager[None]:
    """Exclusive lab lock; a second `up`/`down` fails fast instead of interleaving."""
    lock = lab_dir() / "lock"
    return file_lock(lock, busy=f"another lab command is running (lock {lock} is held)")


def ensure_key() -> Path:
    """The lab's ed25519 key pair, created once per lab directory."""
    key = key_path()
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(key.parent, 0o700)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fms-lab", "-f", str(key)],
            check=True,
            timeout=30,
        )
    return key


def _is_bastion(rec: dict[str, Any]) -> bool:
    from fms_tools.fmsops import platform_contract  # lazily: PyYAML, only once hosts exist

    return bool(set(rec.get("roles", [])) & set(platform_contract.load().jump_groups))


def bastion_of(rec: dict[str, Any], hosts: dict[str, dict[str, Any]]) -> str | None:
    """The bastion this host is reached through: None for a bastion, or in an env without one."""
    if _is_bastion(rec):
        return None
    env_bastions = sorted(r["name"] for r in hosts.values() if r["env"] == rec["env"] and _is_bastion(r))
    return env_bastions[0] if env_bastions else None


def write_ssh_files(hosts: dict[str, dict[str, Any]]) -> None:
    """known_hosts (the keys the lab generated) and an ssh config with one block per host.

    A host matches by name, by private IP and (the bastion) by public IP, so `ssh -F <config>
    kafka-1` and Ansible connecting to the address the inventory gives both use the lab key with
    strict host checking. As on AWS, only the bastion is reached directly: every other host of an
    env that has a bastion is reached through it (ProxyJump), the path Ansible's
    inventory/group_vars/all/connection.yml also takes.
    """
    ssh_dir().mkdir(parents=True, exist_ok=True)
    known, config = [], ["# Generated by fms-lab from the lab state; rewritten on every up/down.\n"]
    for rec in sorted(hosts.values(), key=lambda r: (r["env"], r["name"])):
        addresses = [rec["ip"], *([rec["public_ip"]] if rec.get("public_ip") else [])]
        if rec.get("host_key"):
            known.append(f"{','.join([rec['name'], *addresses])} {' '.join(rec['host_key'])}\n")
        jump = bastion_of(rec, hosts)
        config.append(
            f"Host {rec['name']} {' '.join(addresses)}\n"
            f"  HostName {rec['ip']}\n" + (f"  ProxyJump {jump}\n" if jump else "") + "  User root\n"
            f"  IdentityFile {key_path()}\n"
            "  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {known_hosts_path()}\n"
            "  GlobalKnownHostsFile /dev/null\n"
            "  StrictHostKeyChecking yes\n"
            "  BatchMode yes\n"
            # patient with a lab whose load is many times its cores (site.yml, Spark and the
            # offline test suites on two cores): sshd through the bastion may take seconds to
            # send its banner, and a connection given up on is a host Ansible calls unreachable
            "  ConnectTimeout 15\n"
            "  ConnectionAttempts 3\n"
            "  ServerAliveInterval 10\n"
            "  ServerAliveCountMax 3\n"
            "  LogLevel ERROR\n\n"
        )
    for path, lines in ((known_hosts_path(), known), (ssh_config_path(), config)):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(lines))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
