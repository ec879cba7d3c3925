"""Bring-up from the real Terraform stack, the hosts' health, convergence, DR beside primary, teardown.

Every expectation about hosts comes from Terraform's outputs (instances,
inventory_groups, subnet_cidrs) recorded by the lab, not from a layout
written down in the tests.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fms_tools.fmsops import terraform
from fms_tools.fmsops.platform_contract import load as load_contract
from fms_tools.lab import firewall, hosts, mirror, network, orchestrate, state
from fms_tools.lab.envs import BRIDGE_PREFIX, RULE_TAG_PREFIX
from lab_support import (
    ALL_GROUPS,
    PROFILE,
    REPO,
    cli_env,
    contract_allows,
    emulator_env,
    first_in_group,
    lab_cli,
    outputs,
    profile_host_count,
    subnet_cidrs,
    tcp_from,
    venv_tool,
)

pytestmark = [pytest.mark.lab, pytest.mark.slow]

SSH_PORT = load_contract().port("ssh")
NODE_EXPORTER_PORT = load_contract().port("node_exporter")
KAFKA_CLIENT_PORT = load_contract().port("kafka_client")


def ssh(rec_or_ip, command: str, timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
    target = rec_or_ip["ip"] if isinstance(rec_or_ip, dict) else rec_or_ip
    return hosts.ssh_run(target, command, timeout_s=timeout_s)


def test_every_instance_terraform_created_became_a_host(lab):
    tf = outputs("primary")["instances"]
    assert len(tf) == profile_host_count("primary"), sorted(tf)
    assert set(lab) == set(tf)
    for name, rec in lab.items():
        inst = tf[name]
        assert (rec["instance_id"], rec["ip"], rec["az"]) == (inst["id"], inst["private_ip"], inst["az"])
        assert rec["roles"] == inst["groups"] and rec["role"] == inst["role"]
        assert ipaddress.ip_address(rec["ip"]) in ipaddress.ip_network("198.18.0.0/16")
        assert hosts.nspawn_pid(rec) is not None
    assert set(outputs("primary")["inventory_groups"]) >= ALL_GROUPS, "the minimal profile keeps every role"


def test_bridge_is_the_gateway_of_every_subnet(lab):
    addrs = network._ip_json("-4", "addr", "show", "dev", f"{BRIDGE_PREFIX}primary")[0]["addr_info"]
    have = {f"{a['local']}/{a['prefixlen']}" for a in addrs}
    want = {
        f"{ipaddress.ip_network(c).network_address + 1}/{ipaddress.ip_network(c).prefixlen}"
        for c in subnet_cidrs(outputs("primary"))
    }
    assert have == want


def test_each_host_answers_ssh_at_its_private_ip_as_its_name(lab):
    for name, rec in lab.items():
        res = ssh(rec, "hostname; ip -4 -o addr show dev host0; ip route show default")
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        assert lines[0] == name
        assert f"{rec['ip']}/{rec['prefix']}" in lines[1]
        assert f"via {rec['gateway']}" in lines[2]


def test_systemd_is_running_or_degraded_only_by_explained_units(lab):
    for name, rec in lab.items():
        res = ssh(rec, "systemctl is-system-running; systemctl list-units --failed --plain --no-legend")
        status, *failed = res.stdout.splitlines()
        assert status in ("running", "degraded"), f"{name}: {res.stdout}"
        failed_units = {line.split()[0] for line in failed if line.strip()}
        unexplained = failed_units - set(hosts.KNOWN_DEGRADED_UNITS)
        assert not unexplained, f"{name}: failed units without an explanation: {unexplained}"


def test_hosts_reach_each_others_sshd_exactly_where_the_groups_allow(lab):
    """Every host tries every other host's sshd (concurrently, 3 s each): it is open where
    platform.yml opens SSH (from the bastion), dropped everywhere else - enforced by the lab
    machine, not by the hosts (a bare host has no firewall of its own)."""
    probe = (
        "import socket,sys\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "def one(ip):\n"
        "    try:\n"
        "        s = socket.create_connection((ip, int(sys.argv[1])), timeout=3)\n"
        "        return ip, 'open ' + s.recv(64).decode().strip()\n"
        "    except TimeoutError:\n"
        "        return ip, 'dropped'\n"
        "    except OSError as e:\n"
        "        return ip, f'failed {e}'\n"
        "with ThreadPoolExecutor(16) as pool:\n"
        "    for ip, result in pool.map(one, sys.argv[2:]):\n"
        "        print(ip, result)\n"
    )
    names = {rec["ip"]: name for name, rec in lab.items()}
    wrong = {}
    for a in lab.values():
        others = [b["ip"] for b in lab.values() if b is not a]
        res = ssh(a, f"python3 -c {shlex.quote(probe)} {SSH_PORT} {' '.join(others)}", timeout_s=60)
        assert res.returncode == 0, res
        got = dict(line.split(" ", 1) for line in res.stdout.splitlines())
        assert set(got) == set(others), res.stdout
        for ip, result in got.items():
            want = "open SSH-2.0" if contract_allows(a["name"], names[ip], SSH_PORT) else "dropped"
            if not result.startswith(want):
                wrong[f"{a['name']} -> {names[ip]}"] = f"{result} (want {want})"
    assert not wrong, wrong


def test_a_service_unit_on_one_host_serves_who_the_groups_allow(lab):
    """A unit on a broker serves HTTP on the node_exporter port (nothing else listens there on a
    bare host): the monitoring host gets the page, every other host's SYN is dropped."""
    server = lab[first_in_group("kafka")]
    start = ssh(
        server,
        "systemd-run --unit=lab-probe-http -p RuntimeMaxSec=120 "
        f"python3 -m http.server {NODE_EXPORTER_PORT} --bind {server['ip']} --directory /etc",
    )
    assert start.returncode == 0, start.stderr
    url = f"http://{server['ip']}:{NODE_EXPORTER_PORT}/hostname"
    try:
        clients = [c for c in lab.values() if c is not server]
        allowed = [c for c in clients if contract_allows(c["name"], server["name"], NODE_EXPORTER_PORT)]
        assert allowed, "platform.yml opens node_exporter to monitoring; the lab has a monitoring host"
        for client in allowed:
            res = None
            for _ in range(20):  # bounded: the server needs a moment to bind
                res = ssh(client, f"curl -sS --max-time 5 {url}")
                if res.returncode == 0:
                    break
                time.sleep(0.5)
            assert res is not None and res.stdout.strip() == server["name"], res
        with ThreadPoolExecutor(max_workers=8) as pool:
            denied = [c for c in clients if c not in allowed]
            results = pool.map(lambda c: ssh(c, f"curl -sS --max-time 3 {url}").returncode, denied)
            got = dict(zip([c["name"] for c in denied], results, strict=True))
        assert set(got.values()) == {28}, f"curl exit codes (28 = timed out, i.e. dropped): {got}"
    finally:
        ssh(server, "systemctl stop lab-probe-http")


def _host_hard_limit(resource: str) -> str:
    """The lab machine's own hard limit (what a container can get without CAP_SYS_RESOURCE)."""
    for line in Path("/proc/self/limits").read_text().splitlines():
        if line.startswith(resource):
            return line[26:47].split()[0]
    raise AssertionError(resource)


def _machine_has_cap_sys_resource() -> bool:
    bnd = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("CapBnd:"))
    return bool(int(bnd.split()[1], 16) >> 24 & 1)


def test_hardened_units_and_raised_limits_work(lab):
    """What the service roles' units will use: sandboxing, a dynamic user, raised limits.

    Hosts get CAP_SYS_RESOURCE, so a unit's LimitNOFILE= above the inherited
    limit works as on a VM -- unless the lab machine itself lacks the capability
    (some sandboxes drop it); then systemd clamps the limit to the machine's.
    """
    rec = next(iter(lab.values()))
    props = [
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "NoNewPrivileges=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        "RestrictNamespaces=yes",
        "DynamicUser=yes",
        "LimitNOFILE=1048576",
        "LimitMEMLOCK=infinity",
        "TasksMax=4096",
    ]
    cmd = "systemd-run --wait --pipe --collect " + " ".join(f"-p {p}" for p in props)
    res = ssh(rec, f"{cmd} sh -c 'ulimit -n; ulimit -l; id -u; touch /usr/x 2>/dev/null || echo ro'")
    assert res.returncode == 0, res.stderr
    nofile, memlock, uid, ro = res.stdout.split()
    assert ro == "ro" and uid != "0"
    if _machine_has_cap_sys_resource():
        assert (nofile, memlock) == ("1048576", "unlimited")
    else:
        hard = _host_hard_limit("Max locked memory")
        memlock_kib = hard if hard == "unlimited" else str(int(hard) // 1024)
        assert (nofile, memlock) == (_host_hard_limit("Max open files"), memlock_kib)


def test_a_host_installs_a_debian_and_a_pypi_package(lab):
    rec = lab[first_in_group("monitoring")]
    apt = "export DEBIAN_FRONTEND=noninteractive; timeout 240 apt-get update -q >/dev/null && "
    apt += "timeout 240 apt-get install -y -q hello python3-venv >/dev/null && hello"
    res = ssh(rec, apt, timeout_s=500)
    assert res.returncode == 0 and "Hello, world!" in res.stdout, res.stderr[-2000:]
    pip = "python3 -m venv /opt/probe && timeout 240 /opt/probe/bin/pip install -q six==1.16.0 && "
    pip += "/opt/probe/bin/python -c 'import six; print(six.__version__)'"
    res = ssh(rec, pip, timeout_s=300)
    assert res.returncode == 0 and res.stdout.strip() == "1.16.0", res.stderr[-2000:]


def test_status_lists_every_host_and_the_lab_services(lab, lab_dir: Path):
    res = subprocess.run(
        [*lab_cli(), "status"], env=cli_env(lab_dir), text=True, capture_output=True, timeout=120
    )
    assert res.returncode == 0, res.stdout + res.stderr
    for name, rec in lab.items():
        line = next(line for line in res.stdout.splitlines() if line.startswith(name + " "))
        assert rec["ip"] in line and "running" in line and " ok " in line, line
    url = mirror.configured().url
    assert f"mirror:   {url}/ (running;" in res.stdout, res.stdout
    assert "emulator: http://127.0.0.1:" in res.stdout and "(running)" in res.stdout


def test_lab_ssh_command(lab, lab_dir: Path):
    name = first_in_group("kafka")
    res = subprocess.run(
        [*lab_cli(), "ssh", name, "hostname"],
        env=cli_env(lab_dir),
        text=True,
        capture_output=True,
        timeout=60,
    )
    assert res.returncode == 0 and res.stdout.strip() == name, res.stderr


def test_ec2_inventory_groups_match_terraform_outputs(lab, lab_dir: Path):
    """The aws_ec2 plugin (pointed at the emulator) builds the groups Terraform's outputs announce."""
    cmd = [venv_tool("ansible-inventory"), "-i", str(REPO / "inventory/aws_ec2.yml"), "--list"]
    res = subprocess.run(
        cmd, env=emulator_env(lab_dir), text=True, capture_output=True, timeout=180, cwd=REPO
    )
    assert res.returncode == 0, res.stdout + res.stderr
    inv = json.loads(res.stdout)
    tf_groups = outputs("primary")["inventory_groups"]
    for group, names in tf_groups.items():
        assert sorted(inv.get(group, {}).get("hosts", [])) == sorted(names), group
    hostvars = inv["_meta"]["hostvars"]

    def plain(value):  # ansible-inventory --list marks templated values as unsafe
        return value.get("__ansible_unsafe") if isinstance(value, dict) else value

    # Ansible reaches the bastion at its public address and every other host privately
    # (through it); peers always use the private address.
    bastions = set(outputs("primary")["bastion_public_ips"])
    for name, inst in outputs("primary")["instances"].items():
        host = plain(hostvars[name]["ansible_host"])
        assert plain(hostvars[name]["fms_node_address"]) == inst["private_ip"], name
        if "bastion" in inst["groups"]:
            assert host in bastions, name
        else:
            assert host == inst["private_ip"], name


def test_ansible_reaches_every_host_through_the_ec2_inventory(lab, lab_dir: Path):
    """The inventory is the aws_ec2 plugin pointed at the emulator, plus inventory/lab connection settings."""
    env = {**emulator_env(lab_dir), "ANSIBLE_HOST_KEY_CHECKING": "True"}
    cmd = [
        venv_tool("ansible"),
        "-i",
        str(REPO / "inventory/aws_ec2.yml"),
        "-i",
        str(REPO / "inventory/lab"),
        "all",
        "-m",
        "ansible.builtin.command",
        "-a",
        "hostname",
        "-o",
    ]
    res = subprocess.run(cmd, env=env, text=True, capture_output=True, timeout=180, cwd=REPO)
    assert res.returncode == 0, res.stdout + res.stderr
    for name in lab:
        assert f"{name} | CHANGED | rc=0 | (stdout) {name}" in res.stdout, res.stdout


def test_up_again_keeps_healthy_hosts(lab, lab_dir: Path):
    """A second `lab up` (Terraform included) changes nothing and keeps every host and the mirror."""
    before = {n: r["pid"] for n, r in state.load_hosts().items()}
    ids_before = {n: i["id"] for n, i in outputs("primary")["instances"].items()}
    mirror_pid = state.load_lab()["mirror"]["pid"]
    started = time.monotonic()
    res = subprocess.run(
        [*lab_cli(), "up", "--profile", PROFILE],
        env=cli_env(lab_dir),
        text=True,
        capture_output=True,
        timeout=1200,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert {n: r["pid"] for n, r in state.load_hosts().items()} == before
    assert {n: i["id"] for n, i in outputs("primary")["instances"].items()} == ids_before
    assert res.stdout.count("; kept") == len(lab)
    assert state.load_lab()["mirror"]["pid"] == mirror_pid and "(kept)" in res.stdout
    # Where to look, printed at the end of `up`.
    url = mirror.configured().url
    tail = res.stdout[res.stdout.index("where to look:") :]
    assert f"mirror:     {url}/" in tail and "fms-lab ssh" in tail and "ansible-inventory" in tail
    print(f"\nsecond up (Terraform + converge, nothing to do): {time.monotonic() - started:.1f}s")
    print(res.stdout[res.stdout.index("emulator: http") :])


def test_a_stopped_host_restarts_with_its_own_disk(lab):
    name = first_in_group("kafka")
    rec = state.load_hosts()[name]
    assert ssh(rec, "echo keep-me > /var/tmp/marker").returncode == 0
    hosts.stop(rec)
    all_hosts = state.load_hosts()
    all_hosts[rec["name"]] = rec
    state.save_hosts(all_hosts)
    assert hosts.nspawn_pid(rec) is None and not hosts.cgroup_pids(rec["name"])
    orchestrate.up("primary", PROFILE, apply=False)
    rec = state.load_hosts()[name]
    assert ssh(rec, "cat /var/tmp/marker").stdout.strip() == "keep-me"


def _peer_listener(host: dict) -> subprocess.CompletedProcess[str]:
    """A server on Kafka's client port (MirrorMaker's way in from the other region), 120 s at most."""
    return ssh(
        host,
        "systemd-run --unit=lab-probe-peer -p RuntimeMaxSec=120 "
        f"python3 -m http.server {KAFKA_CLIENT_PORT} --bind {host['ip']} --directory /etc",
    )


def _apply_without_peering(env_name: str, url: str, profile: str) -> dict[str, object]:
    return terraform.apply_env(env_name, url, profile, variables={"enable_peering": "false"})


def test_dr_env_runs_beside_primary_on_its_own_bridge(lab, dr_applied):
    waited = dr_applied()  # the DR stack's first apply ran in the background since the lab came up
    started = time.monotonic()
    dr = orchestrate.up("dr", PROFILE, apply=True)  # Terraform again (nothing to change) + the hosts
    print(
        f"\nDR up (Terraform + {len(dr)} hosts): {time.monotonic() - started:.1f}s, after {waited:.1f}s "
        "waiting for its first apply"
    )
    tf = outputs("dr")["instances"]
    assert set(dr) == set(tf) and len(dr) == profile_host_count("dr")
    assert not set(dr) & set(lab), "each env has its own host names"
    assert network.link_exists(f"{BRIDGE_PREFIX}dr") and network.link_exists(f"{BRIDGE_PREFIX}primary")
    for name, rec in dr.items():
        assert rec["ip"] == tf[name]["private_ip"]
        assert ipaddress.ip_address(rec["ip"]) in ipaddress.ip_network("198.19.0.0/16")
    dr_host = dr[outputs("dr")["inventory_groups"]["kafka"][0]]
    primary_host = lab[first_in_group("kafka")]
    # The DR drill needs the regions to reach each other (MirrorMaker on Kafka's client port),
    # without NAT between them, and only there: the peer CIDR is opened on that port alone.
    start = _peer_listener(primary_host)
    assert start.returncode == 0, start.stderr
    try:
        url = f"http://{primary_host['ip']}:{KAFKA_CLIENT_PORT}/hostname"
        res = ssh(dr_host, f"for i in $(seq 20); do curl -sS --max-time 5 {url} && break; sleep 0.5; done")
        assert res.stdout.strip() == primary_host["name"], res
    finally:
        ssh(primary_host, "systemctl stop lab-probe-peer")
    assert tcp_from(dr_host["name"], primary_host["ip"], SSH_PORT) == "dropped"
    # The lab machine routes between its bridges whatever Terraform says; AWS routes between the
    # regions only through the peering. Without it (Terraform's own switch) they cannot talk.
    started = time.monotonic()
    orchestrate.up("dr", PROFILE, apply=_apply_without_peering)
    print(f"DR re-applied without the peering, both firewalls updated: {time.monotonic() - started:.1f}s")
    assert outputs("dr").get("peering") is None  # terraform output leaves out a null output
    assert _peer_listener(primary_host).returncode == 0
    try:
        assert tcp_from(dr_host["name"], primary_host["ip"], KAFKA_CLIENT_PORT) == "dropped"
    finally:
        ssh(primary_host, "systemctl stop lab-probe-peer")
    # DR hosts download from the same mirror (it listens on the primary bridge).
    url = mirror.configured().url
    res = ssh(dr_host, f"curl -fsS -o /dev/null -w '%{{http_code}}' --max-time 10 {url}/apache/")
    assert res.stdout == "200", res
    orchestrate.down(["dr"])
    assert not network.link_exists(f"{BRIDGE_PREFIX}dr")
    assert not network.tagged_rules(f"{RULE_TAG_PREFIX}dr")
    assert set(state.load_hosts()) == set(lab)
    assert ssh(primary_host, "hostname").stdout.strip() == primary_host["name"]
    assert orchestrate._emulator_alive(state.load_lab()["emulator"]), "primary still needs the emulator"
    assert mirror.alive(state.load_lab()["mirror"]), "the mirror lives on the primary bridge"


def _memory_report(recs: dict) -> dict[str, int]:
    return {n: round(hosts.memory_usage(n).get("anon", 0) / 2**20) for n in recs}


def test_down_leaves_nothing(lab, lab_dir: Path):
    names = set(state.load_hosts())
    emu = state.load_lab()["emulator"]
    mirror_rec = state.load_lab()["mirror"]
    saved_forward = state.load_lab()["saved_ip_forward"]
    saved_sysctls = state.load_lab().get("saved_sysctls", {})
    print(f"\nidle host memory (MiB, rss+shmem): {_memory_report(state.load_hosts())}")
    res = subprocess.run(
        [*lab_cli(), "down"], env=cli_env(lab_dir), text=True, capture_output=True, timeout=300
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert not hosts.nspawn_processes_under(lab_dir), "nspawn processes left"
    for name in names:
        assert not hosts.cgroup_pids(name), f"processes left in {name}'s cgroups"
        assert not any(d.exists() for d in hosts.cgroup_dirs(name)), f"cgroups of {name} left"
    assert not network.lab_bridges(), "bridges left"
    veths = [n for n in names if hosts.host_veth_exists(n)]
    assert not veths, f"host-side veths left: {veths}"
    assert not network.tagged_rules(), "iptables rules left"
    assert not firewall.leftovers(), f"security-group chains or IPv6 rules left: {firewall.leftovers()}"
    for key, value in saved_sysctls.items():  # bridge netfilter as it was before the lab set it
        assert firewall.HOST.read_sysctl(key) == value, key
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(lab_dir) not in mounts, "overlay mounts left"
    assert hosts.proc_start_time(emu["pid"]) is None, "moto_server left running"
    assert not [p for p in Path("/proc").glob("[0-9]*/cmdline") if _is_our_moto(p, emu["port"])]
    assert hosts.proc_start_time(mirror_rec["pid"]) is None, "artifact mirror left running"
    assert not mirror.processes_of(lab_dir), "mirror server or build processes left"
    assert network.read_ip_forward() == saved_forward
    assert not state.outputs_file("primary").exists()
    assert not (lab_dir / "hosts").exists()
    assert state.load_hosts() == {} and state.load_lab()["envs"] == {}
    stale = sorted(set(orchestrate.service_urls()) & names)
    assert not stale, f"service URLs of removed hosts left for `status`: {stale}"
    # each host's journal is kept for the post-mortem of a failed run
    for name in names:
        journal = state.logs_dir() / f"{name}.journal.log"
        assert journal.exists() and "systemd" in journal.read_text(errors="replace"), f"no journal of {name}"
    again = subprocess.run(
        [*lab_cli(), "down"], env=cli_env(lab_dir), text=True, capture_output=True, timeout=120
    )
    assert again.returncode == 0, again.stdout + again.stderr


def _is_our_moto(cmdline: Path, port: int) -> bool:
    try:
        argv = cmdline.read_bytes().split(b"\0")
    except OSError:
        return False
    return any(a.endswith((b"moto_server", b"moto_server.py")) for a in argv) and str(port).encode() in argv
