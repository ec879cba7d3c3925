"""Issue 3 proof: the lab's artifact mirror serves archives that work on a lab host.

On one lab host (the first Kafka host Terraform created): download the
mirror's Kafka archive over HTTP at the URL the kafka role computes from
`apache_mirror_base_url` (as the lab inventory resolves it), verify it against
the published .sha512 with `sha512sum -c`, install a JRE from Debian, format
KRaft storage with the archive's kafka-storage.sh, start a combined
broker+controller with its kafka-server-start.sh, create a topic, produce and
consume one record with the console tools, stop it. Then the same for the
Hadoop archive and `bin/hdfs version`. Every wait is bounded.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from fms_tools.artifacts.config import resolve_paths
from fms_tools.lab import hosts, mirror
from lab_support import REPO, emulator_env, first_in_group, venv_tool

pytestmark = [pytest.mark.lab, pytest.mark.slow]

JAVA_HOME = "/usr/lib/jvm/java-17-openjdk-amd64"
WORK = "/opt/fms-probe"


def ssh(rec, command: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return hosts.ssh_run(rec["ip"], command, timeout_s=timeout_s)


def ok(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 0, (
        f"rc={res.returncode}\nstdout:\n{res.stdout[-3000:]}\nstderr:\n{res.stderr[-3000:]}"
    )
    return res.stdout


def archive_path(target: str) -> str:
    """The archive's path below mirror/apache, from `fms-artifacts path <target>`."""
    res = subprocess.run(
        [sys.executable, "-m", "fms_tools.artifacts", "path", target],
        text=True,
        capture_output=True,
        timeout=60,
        check=True,
    )
    path = Path(res.stdout.split()[0])
    return str(path.relative_to(resolve_paths().apache))


@pytest.fixture(scope="module")
def base_urls(lab, lab_dir: Path) -> dict[str, str]:
    """The artifact base URLs every lab host gets, resolved by Ansible with the project's ansible.cfg
    and playbook directory (so ansible/group_vars/all.yml's production defaults are in play)."""
    env = {**emulator_env(lab_dir), "ANSIBLE_CONFIG": str(REPO / "ansible/ansible.cfg")}
    names = " ".join(f"{k}={{{{ {k} }}}}" for k in mirror.BASE_URLS)
    cmd = [
        venv_tool("ansible"),
        "-i",
        str(REPO / "inventory/aws_ec2.yml"),
        "-i",
        str(REPO / "inventory/lab"),
        "--playbook-dir",
        str(REPO / "ansible"),
        "all",
        "-m",
        "ansible.builtin.debug",
        "-a",
        f"msg={shlex.quote(names)}",
        "-o",
    ]
    res = subprocess.run(cmd, env=env, text=True, capture_output=True, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stdout + res.stderr
    per_host = {}
    for line in res.stdout.splitlines():
        if " | SUCCESS => " in line:
            host, _, payload = line.partition(" | SUCCESS => ")
            msg = json.loads(payload)["msg"]
            per_host[host] = dict(kv.split("=", 1) for kv in msg.split())
    assert set(per_host) == set(lab), res.stdout
    first = next(iter(per_host.values()))
    assert all(v == first for v in per_host.values()), per_host
    return first


def test_lab_inventory_points_every_role_at_the_mirror(base_urls):
    url = mirror.configured().url
    assert base_urls == {
        "apache_mirror_base_url": f"{url}/apache",
        "maven_repository_url": f"{url}/maven2",
        "github_base_url": f"{url}/github",
    }


@pytest.fixture(scope="module")
def java_host(lab):
    """The first Kafka host, with a JRE from Debian (openjdk-17-jre-headless)."""
    rec = lab[first_in_group("kafka")]
    install = (
        "export DEBIAN_FRONTEND=noninteractive; "
        "timeout 300 apt-get update -q >/dev/null && "
        "timeout 600 apt-get install -y -q --no-install-recommends openjdk-17-jre-headless >/dev/null && "
        f"{JAVA_HOME}/bin/java -version 2>&1 | head -1"
    )
    assert "17." in ok(ssh(rec, install, timeout_s=960))
    return rec


def fetch_verified(rec, base_url: str, rel: str) -> str:
    """Download <base>/<rel> and its .sha512 into WORK, check with sha512sum -c; returns the file name."""
    name = rel.rsplit("/", 1)[1]
    script = (
        f"set -e; mkdir -p {WORK}; cd {WORK}; rm -f {name} {name}.sha512; "
        f"curl -fsS --retry 3 --max-time 300 -O {base_url}/{rel}; "
        f"curl -fsS --retry 3 --max-time 30 -O {base_url}/{rel}.sha512; "
        f"sha512sum -c {name}.sha512"
    )
    assert f"{name}: OK" in ok(ssh(rec, script, timeout_s=400))
    return name


def test_kafka_archive_from_the_mirror_runs_a_kraft_broker(java_host, base_urls):
    rec = java_host
    rel = archive_path("kafka")  # kafka/<v>/kafka_<scala>-<v>.tgz, as roles/kafka computes it
    tgz = fetch_verified(rec, base_urls["apache_mirror_base_url"], rel)
    home = f"{WORK}/{tgz.removesuffix('.tgz')}"
    bootstrap = f"{rec['ip']}:9092"
    advertised = f"PLAINTEXT://{bootstrap},CONTROLLER://localhost:9093"
    env = f"export JAVA_HOME={JAVA_HOME} PATH={JAVA_HOME}/bin:$PATH KAFKA_HEAP_OPTS='-Xms256m -Xmx256m';"
    prepare = (
        f"set -e; cd {WORK}; rm -rf {home} {WORK}/kraft; tar xzf {tgz}; {env} "
        f"sed -e 's|^log.dirs=.*|log.dirs={WORK}/kraft|' "
        f"-e 's|^advertised.listeners=.*|advertised.listeners={advertised}|' "
        f"{home}/config/server.properties > {WORK}/server.properties; "
        f'cid=$({home}/bin/kafka-storage.sh random-uuid); echo "cluster $cid"; '
        f"timeout 120 {home}/bin/kafka-storage.sh format --standalone -t $cid -c {WORK}/server.properties"
    )
    out = ok(ssh(rec, prepare, timeout_s=200))
    assert "Formatting" in out or "formatted" in out.lower(), out
    start = (
        "systemd-run --unit=fms-probe-kafka -p RuntimeMaxSec=900 "
        f"-E JAVA_HOME={JAVA_HOME} -E KAFKA_HEAP_OPTS='-Xms384m -Xmx384m' "
        f"{home}/bin/kafka-server-start.sh {WORK}/server.properties"
    )
    ok(ssh(rec, start))
    topic, record = "fms-probe", f"probe-{uuid.uuid4().hex}"
    try:
        # Bounded: the broker needs a JVM start and a KRaft election (slow on a loaded machine).
        create = (
            f"{env} end=$((SECONDS + 300)); while [ $SECONDS -lt $end ]; do "
            f"  timeout 45 {home}/bin/kafka-topics.sh --bootstrap-server {bootstrap} --create "
            f"    --if-not-exists --topic {topic} --partitions 1 --replication-factor 1 && exit 0; "
            "  systemctl is-active -q fms-probe-kafka || { echo 'broker exited'; exit 3; }; sleep 3; "
            "done; exit 2"
        )
        res = ssh(rec, create, timeout_s=420)
        if res.returncode != 0:
            log = ssh(rec, "journalctl -u fms-probe-kafka --no-pager | tail -40").stdout
            pytest.fail(f"topic not created ({res.returncode}): {res.stdout[-1500:]}\nbroker log:\n{log}")
        produce = (
            f"{env} echo {record} | timeout 120 {home}/bin/kafka-console-producer.sh "
            f"--bootstrap-server {bootstrap} --topic {topic}"
        )
        ok(ssh(rec, produce, timeout_s=150))
        consume = (
            f"{env} timeout 150 {home}/bin/kafka-console-consumer.sh --bootstrap-server {bootstrap} "
            f"--topic {topic} --from-beginning --max-messages 1 --timeout-ms 90000"
        )
        assert ok(ssh(rec, consume, timeout_s=180)).strip().splitlines()[-1] == record
    finally:
        ssh(rec, "systemctl stop fms-probe-kafka; systemctl reset-failed fms-probe-kafka", timeout_s=120)
    left = ssh(rec, "systemctl is-active fms-probe-kafka; pgrep -f '[k]afka[.]Kafka' || true").stdout
    assert left.split() == ["inactive"], f"broker still running after stop: {left}"


def test_hadoop_archive_from_the_mirror_runs_hdfs_version(java_host, base_urls):
    rec = java_host
    rel = archive_path("hadoop")  # hadoop/common/hadoop-<v>/hadoop-<v>.tar.gz, as roles/hdfs computes it
    tgz = fetch_verified(rec, base_urls["apache_mirror_base_url"], rel)
    home = f"{WORK}/{tgz.removesuffix('.tar.gz')}"
    version = home.rsplit("-", 1)[1]
    script = (
        f"set -e; cd {WORK}; rm -rf {home}; tar xzf {tgz}; "
        f"JAVA_HOME={JAVA_HOME} timeout 120 {home}/bin/hdfs version"
    )
    out = ok(ssh(rec, script, timeout_s=240))
    assert out.splitlines()[0] == f"Hadoop {version}", out
