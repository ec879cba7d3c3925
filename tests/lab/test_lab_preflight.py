"""Focused tests without lab hosts: bad operator input and unsuitable machines are reported
before the lab changes anything; discovery ignores decoys; the mirror's configuration and
process handling; the check of discovered instances against Terraform's outputs."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest
from fms_tools.lab import discovery, hosts, mirror, network, orchestrate, preflight, state
from fms_tools.lab.envs import ENVS, PROFILES, Env, Profile
from lab_support import provision_env

pytestmark = pytest.mark.lab


def test_not_root_is_reported(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    (msg,) = preflight.check_root()
    assert "root" in msg and "sudo" in msg


def test_missing_tools_name_their_debian_package(monkeypatch):
    real = preflight.shutil.which
    monkeypatch.setattr(
        preflight.shutil, "which", lambda t: None if t in ("systemd-nspawn", "debootstrap") else real(t)
    )
    (msg,) = preflight.check_tools()
    assert "systemd-nspawn (Debian package systemd-container)" in msg
    assert "debootstrap (Debian package debootstrap)" in msg
    assert "apt-get install debootstrap systemd-container" in msg


def test_missing_terraform_is_reported_only_when_the_lab_applies(monkeypatch):
    real = preflight.shutil.which
    monkeypatch.setattr(preflight.shutil, "which", lambda t: None if t == "terraform" else real(t))
    assert any("terraform is not on PATH" in p for p in preflight.check_tools(terraform=True))
    assert not any("terraform" in p for p in preflight.check_tools(terraform=False))


def test_missing_terraform_helper_fails_before_anything_changes(monkeypatch):
    from fms_tools.fmsops import terraform

    monkeypatch.delattr(terraform, "apply_env", raising=False)
    with pytest.raises(SystemExit, match=r"apply_env.*--no-apply"):
        orchestrate._apply_step(True)
    assert orchestrate._apply_step(False) is None
    assert orchestrate._apply_step(print) is print


def test_memory_shortfall_names_the_smaller_profile():
    (msg,) = preflight.check_memory(Profile("huge", 10**9, ""))
    assert "--profile minimal" in msg
    assert preflight.check_memory(Profile("tiny", 1, "")) == []


def test_taken_port_is_reported():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        (msg,) = preflight.check_port(port, "the AWS emulator")
        assert str(port) in msg and "taken" in msg


def test_cidr_collision_with_a_route_is_reported(monkeypatch):
    fake = [{"dst": "198.18.0.0/15", "dev": "tun7", "table": "main"}, {"dst": "default", "dev": "eth0"}]
    monkeypatch.setattr(network, "_ip_json", lambda *a: fake if "route" in a else [])
    (msg,) = preflight.check_cidr(ENVS["primary"], own_bridge=None)
    assert "198.18.0.0/15 dev tun7" in msg and "collides" in msg


def test_cidr_collision_with_a_real_interface_is_reported():
    if os.geteuid() != 0:
        pytest.skip("creating a probe interface needs root")
    link = "fmsprobe0"
    subprocess.run(["ip", "link", "add", link, "type", "bridge"], check=True, timeout=10)
    try:
        subprocess.run(["ip", "addr", "add", "198.19.250.1/24", "dev", link], check=True, timeout=10)
        (msg,) = preflight.check_cidr(ENVS["dr"], own_bridge=None)
        assert "198.19.250.1/24 on fmsprobe0" in msg
        assert preflight.check_cidr(Env("x", "r", "198.18.0.0/16"), own_bridge=None) == []
    finally:
        subprocess.run(["ip", "link", "del", link], check=True, timeout=10)


def test_bridge_without_hosts_is_stale_and_one_with_a_host_is_not():
    """A lab bridge left by a lab whose hosts are gone is reclaimed by `up`; one in use never is."""
    if os.geteuid() != 0:
        pytest.skip("creating a probe bridge needs root")
    bridge, port, peer = "fmsprobe1", "fmsprobe1p", "fmsprobe1q"
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True, timeout=10)
    try:
        assert network.is_stale_bridge(bridge)
        subprocess.run(
            ["ip", "link", "add", port, "type", "veth", "peer", "name", peer], check=True, timeout=10
        )
        subprocess.run(["ip", "link", "set", port, "master", bridge], check=True, timeout=10)
        assert not network.is_stale_bridge(bridge)
        assert not network.is_stale_bridge("fmsprobe-absent")
    finally:
        subprocess.run(["ip", "link", "del", port], check=False, timeout=10)
        subprocess.run(["ip", "link", "del", bridge], check=True, timeout=10)


def test_cidr_outside_the_reserved_range_is_refused():
    (msg,) = preflight.check_cidr(Env("x", "r", "10.0.0.0/16"), own_bridge=None)
    assert "198.18.0.0/15" in msg


def test_failed_preflight_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("FMS_LAB_DIR", str(tmp_path))
    bridges_before = network.lab_bridges()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        monkeypatch.setenv("FMS_EMULATOR_PORT", str(sock.getsockname()[1]))
        with pytest.raises(preflight.PreflightError) as err:
            orchestrate.up("primary", "minimal", apply=False)
    assert "nothing was changed" in str(err.value) and "taken" in str(err.value)
    assert network.lab_bridges() == bridges_before
    assert "emulator" not in state.load_lab() and state.load_lab()["envs"] == {}
    assert not (tmp_path / "hosts").exists()


def test_unknown_profile_and_env_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("FMS_LAB_DIR", str(tmp_path))
    with pytest.raises(SystemExit, match="unknown profile"):
        orchestrate.up("primary", "giant")
    with pytest.raises(SystemExit, match="unknown env"):
        orchestrate.up("staging", "minimal")
    assert set(PROFILES) == {"lab", "minimal"}


@pytest.fixture
def emulator(tmp_path):
    from fms_tools.fmsops.emulator import Emulator, free_port

    emu = Emulator(port=free_port(), log_path=tmp_path / "emulator.log").start()
    try:
        yield emu.url
    finally:
        emu.stop()


def test_discovery_reads_the_instances_and_ignores_decoys(emulator):
    provision_env("primary", emulator)
    found = discovery.discover(ENVS["primary"], emulator)
    assert [i.name for i in found.instances] == ["fms-lab-kafka-1", "fms-lab-monitoring-1", "fms-lab-kafka-2"]
    kafka = found.instances[0]
    assert kafka.roles == ("kafka", "kafka_controller") and kafka.role == "kafka"
    assert kafka.gateway == "198.18.1.1" and kafka.prefixlen == 24 and kafka.az == "ap-northeast-2a"
    assert found.gateways == ["198.18.1.1/24", "198.18.2.1/24", "198.18.11.1/24", "198.18.12.1/24"]
    assert discovery.discover(ENVS["dr"], emulator).instances == []


def test_discovery_refuses_instances_outside_the_lab_cidr(emulator):
    ec2 = discovery.ec2_client("ap-northeast-2", emulator)
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.20.1.0/24")["Subnet"]["SubnetId"]
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    for name in ("Bad_Name", "outside-1"):
        tags = [{"Key": "Name", "Value": name}, {"Key": "Project", "Value": "fms"}]
        ec2.run_instances(
            ImageId=ami,
            MinCount=1,
            MaxCount=1,
            SubnetId=subnet,
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
        )
    with pytest.raises(discovery.DiscoveryError) as err:
        discovery.discover(ENVS["primary"], emulator)
    text = str(err.value)
    assert "'Bad_Name' is not a valid host name" in text
    assert "outside-1: private IP 10.20.1." in text and "198.18.0.0/16" in text
    assert "subnet 10.20.1.0/24 is outside" in text


def test_etc_hosts_keeps_foreign_lines_and_replaces_the_lab_block():
    rec = {"name": "a", "ip": "198.18.1.4"}
    peers = [rec, {"name": "b", "ip": "198.18.1.5"}]
    first = hosts.etc_hosts("127.0.0.1\tlocalhost\n10.9.9.9\tadded-by-ansible\n", rec, peers)
    again = hosts.etc_hosts(first, rec, peers[:1])
    assert "added-by-ansible" in again and "198.18.1.4\ta" in again and "198.18.1.5" not in again
    assert again.count("BEGIN fms-lab") == 1


def test_ssh_files_pin_the_generated_host_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("FMS_LAB_DIR", str(tmp_path))
    state.write_ssh_files(
        {"a": {"name": "a", "env": "primary", "ip": "198.18.1.4", "host_key": ["ssh-ed25519", "AAAAkey"]}}
    )
    assert (tmp_path / "ssh/known_hosts").read_text() == "a,198.18.1.4 ssh-ed25519 AAAAkey\n"
    config = (tmp_path / "ssh/config").read_text()
    assert "Host a 198.18.1.4\n" in config and "StrictHostKeyChecking yes" in config
    with contextlib.suppress(FileNotFoundError):
        assert not Path(tmp_path / "hosts").exists()


def test_ssh_files_reach_every_host_but_the_bastion_through_it(tmp_path, monkeypatch):
    """As on AWS: the bastion directly (by private and public address), the others via ProxyJump
    through their own env's bastion; an env without a bastion is reached directly."""
    monkeypatch.setenv("FMS_LAB_DIR", str(tmp_path))
    recs = {
        "b": {
            "name": "b",
            "env": "primary",
            "ip": "198.18.0.5",
            "public_ip": "203.0.113.9",
            "roles": ["bastion"],
            "host_key": ["ssh-ed25519", "AAAAb"],
        },
        "k": {"name": "k", "env": "primary", "ip": "198.18.3.4", "roles": ["kafka", "kafka_controller"]},
        "d": {"name": "d", "env": "dr", "ip": "198.19.3.4", "roles": ["kafka"]},
    }
    state.write_ssh_files(recs)
    config = (tmp_path / "ssh/config").read_text()
    blocks = {b[b.index("Host ") :].split("\n", 1)[0]: b for b in config.split("\n\n") if "Host " in b}
    assert "ProxyJump" not in blocks["Host b 198.18.0.5 203.0.113.9"]
    assert "HostName 198.18.0.5" in blocks["Host b 198.18.0.5 203.0.113.9"]
    assert "  ProxyJump b\n" in blocks["Host k 198.18.3.4"]
    assert "ProxyJump" not in blocks["Host d 198.19.3.4"]
    assert (tmp_path / "ssh/known_hosts").read_text() == "b,198.18.0.5,203.0.113.9 ssh-ed25519 AAAAb\n"


# ---------------------------------------------------------------------------- mirror


def _mirror_config(tmp_path: Path, monkeypatch, url: str) -> None:
    config = tmp_path / "lab_artifacts.yml"
    config.write_text(
        f"fms_lab_mirror_url: {url}\napache_mirror_base_url: '{{{{ fms_lab_mirror_url }}}}/apache'\n"
    )
    monkeypatch.setattr(mirror, "CONFIG", config)


def test_mirror_is_configured_on_the_primary_gateway():
    ep = mirror.configured()
    assert (ep.url, ep.address, ep.port) == ("http://198.18.0.1:8585", "198.18.0.1", 8585)
    # the first address of the primary lab VPC: the gateway of its first subnet
    assert ep.address == str(ENVS["primary"].network.network_address + 1)


@pytest.mark.parametrize("bad", ["https://198.18.0.1:8585", "http://mirror.lab:8585", "http://198.18.0.1/x"])
def test_bad_mirror_url_is_refused(tmp_path, monkeypatch, bad):
    _mirror_config(tmp_path, monkeypatch, bad)
    with pytest.raises(SystemExit, match="fms_lab_mirror_url must be"):
        mirror.configured()


def test_mirror_outside_every_lab_env_is_refused(tmp_path, monkeypatch):
    _mirror_config(tmp_path, monkeypatch, "http://10.1.2.3:8585")
    with pytest.raises(SystemExit, match="in no lab env's CIDR"):
        orchestrate._mirror_plan(ENVS["primary"], {"envs": {}})


def test_dr_alone_does_not_serve_the_mirror_of_the_primary_bridge(capsys):
    assert orchestrate._mirror_plan(ENVS["dr"], {"envs": {}}) == (None, None)
    assert "bring `--env primary` up too" in capsys.readouterr().err
    ep, owner = orchestrate._mirror_plan(ENVS["dr"], {"envs": {"primary": {}}})
    assert owner == "primary" and ep == mirror.configured()
    assert orchestrate._mirror_plan(ENVS["primary"], {"envs": {}})[1] == "primary"


def test_taken_mirror_port_fails_preflight_before_anything_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("FMS_LAB_DIR", str(tmp_path))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        # taken on loopback = taken for a bind to the (not yet existing) lab address as well
        (msg,) = preflight.check_port(port, "the lab's artifact mirror", host="0.0.0.0")
        assert f"port {port} on this machine (the lab's artifact mirror) is taken" in msg
        _mirror_config(tmp_path, monkeypatch, f"http://198.18.0.1:{port}")
        with pytest.raises(preflight.PreflightError) as err:
            orchestrate.up("primary", "minimal", apply=False)
    assert "artifact mirror" in str(err.value) and "nothing was changed" in str(err.value)
    assert "emulator" not in state.load_lab() and not mirror.processes_of(tmp_path)


def test_mirror_server_lifecycle_on_loopback(tmp_path, monkeypatch):
    """start -> answers with the mirror tree -> found by its marker -> stopped (no lab hosts needed)."""
    from fms_tools.fmsops.emulator import free_port

    # The server's lifecycle, not the artifacts: a stand-in mirror tree in a cache of its own, so the
    # test runs on a new machine too (its mirror is built only later, by the lab).
    monkeypatch.setenv("FMS_CACHE_DIR", str(tmp_path / "cache"))
    (mirror.mirror_root() / "apache").mkdir(parents=True)
    (mirror.mirror_root() / "stand-in.txt").write_text("served from the test's own cache\n")
    monkeypatch.setenv("FMS_LAB_DIR", str(tmp_path))
    ep = mirror.Endpoint(f"http://127.0.0.1:{(port := free_port())}", "127.0.0.1", port)
    rec = mirror.start(ep)
    try:
        assert mirror.alive(rec) and mirror.processes_of(tmp_path) == {rec["pid"]}
        with urllib.request.urlopen(f"{ep.url}/", timeout=10) as resp:
            listing = resp.read().decode()
        assert "apache/" in listing and "stand-in.txt" in listing
    finally:
        mirror.stop(rec)
    assert not mirror.alive(rec) and not mirror.processes_of(tmp_path) and not mirror.answers(ep.url)
    mirror.sweep(tmp_path)  # nothing left to sweep: no error


# ---------------------------------------------------------------------------- Terraform outputs


def _inst(name: str, ip: str) -> discovery.Instance:
    return discovery.Instance(
        instance_id=f"i-{name}",
        name=name,
        role="kafka",
        roles=("kafka",),
        private_ip=ip,
        subnet_id="subnet-1",
        subnet_cidr="198.18.64.0/24",
        az="ap-northeast-2a",
        vpc_id="vpc-1",
        env_tag="lab",
    )


def test_discovered_instances_must_match_terraform_outputs():
    env = ENVS["primary"]
    found = discovery.Discovery(env, [_inst("a", "198.18.64.4"), _inst("b", "198.18.64.5")])
    orchestrate._check_against_outputs(
        env, found, {"a": {"private_ip": "198.18.64.4"}, "b": {"private_ip": "198.18.64.5"}}
    )
    with pytest.raises(SystemExit) as err:
        orchestrate._check_against_outputs(
            env, found, {"a": {"private_ip": "198.18.64.9"}, "c": {"private_ip": "198.18.64.6"}}
        )
    text = str(err.value)
    assert "only in Terraform's outputs: ['c']" in text
    assert "running in the emulator, not in Terraform's outputs: ['b']" in text
    assert "a: Terraform says 198.18.64.9, the emulator 198.18.64.4" in text
