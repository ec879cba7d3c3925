"""site.yml on the lab hosts, as an operator runs it on AWS, then testinfra against the result.

Runs after the host tests (the conftest orders this module last among the lab tests) on the
session's primary lab: bare hosts fresh from Terraform. Asserted:

* ``ansible-playbook -i inventory/aws_ec2.yml -i inventory/lab ansible/site.yml`` converges every
  host Terraform created (no failed or unreachable host);
* a second run reports changed=0 on every host (from the recap);
* the testinfra suite (tests/infra) passes against the same inventory.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest
from lab import converge, state
from lab_support import REPO, host_ssh, must, outputs, playbook_failures

pytestmark = [pytest.mark.lab, pytest.mark.slow]


def _changed_tasks(run: converge.PlaybookRun) -> list[str]:
    """`TASK [...]` headers followed by a `changed:` result, for a readable failure message."""
    task, found = "", []
    for line in run.log.read_text(errors="replace").splitlines():
        if line.startswith("TASK ["):
            task = line.split("]", 1)[0] + "]"
        elif line.startswith("changed:"):
            found.append(f"{task} {line[:160]}")
    return found


def test_site_converges_every_host_terraform_created(converged):
    assert set(converged.recap) == set(outputs()["instances"]), "site.yml must reach every lab host"
    assert converged.total("failed") == 0 and converged.total("unreachable") == 0
    assert converged.total("changed") > 0, "bare hosts must be changed by the first run"


def test_second_site_run_changes_nothing(converged):
    again = converge.run_playbook("primary", "site")
    print(f"\nsite.yml again: {again.summary()}")
    assert again.ok, playbook_failures(again)
    changed = {h: c["changed"] for h, c in again.recap.items() if c.get("changed")}
    assert not changed, f"second run changed {changed}:\n" + "\n".join(_changed_tasks(again)[:30])


def test_testinfra_suite_passes_on_the_lab(converged):
    started = time.monotonic()
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/infra",
        "--fms-inventory",
        converge.inventory_for("primary"),
        "--fms-inventory",
        "inventory/lab",
    ]
    res = subprocess.run(
        cmd,
        cwd=REPO,
        env=converge.ansible_env("primary"),
        capture_output=True,
        text=True,
        timeout=40 * 60,
        check=False,
    )
    tail = res.stdout[-6000:]
    print(f"\ntestinfra on the lab ({time.monotonic() - started:.0f}s):\n{tail[-800:]}")
    assert res.returncode == 0, f"testinfra failed (rc={res.returncode}):\n{tail}\n{res.stderr[-2000:]}"
    m = re.search(r"(\d+) passed", res.stdout)
    assert m and int(m.group(1)) >= 50, f"too few testinfra checks ran:\n{tail}"
    assert "error" not in res.stdout.splitlines()[-1], tail
    assert state.load_hosts(), "the lab is still up for the teardown test"


# ---------------------------------------------------------------------------- rolling restart under load

PROBE_TOPIC = "fms.probe.rolling-restart"
PRODUCE_RATE = 100  # records/s, bounded: the producer stops by itself after MAX_PRODUCE_S
MAX_PRODUCE_S = 20 * 60
WORK = "/var/tmp/fms-rolling-probe"


def _kafka_shell_env() -> str:
    """JAVA_HOME and heap as the kafka unit has them, for the tools run over ssh."""
    return (
        "export JAVA_HOME=$(systemctl show kafka -p Environment --value | tr ' ' '\\n' "
        "| sed -n 's/^JAVA_HOME=//p'); export KAFKA_HEAP_OPTS=-Xmx256m; "
    )


def test_rolling_restart_under_load_loses_nothing(converged):
    """rolling_restart.yml while Kafka's VerifiableProducer writes with acks=all: 0 failed, 0 lost."""
    kafka_hosts = sorted(outputs()["inventory_groups"]["kafka"])
    # The probe runs where the Kafka tools are (a broker host) as its own unit: restarting the
    # kafka service there does not touch it.
    client = kafka_hosts[0]
    env = _kafka_shell_env()
    started = time.monotonic()
    bootstrap = must(
        host_ssh(client, "sed -n 's/^bootstrap.servers=//p' /etc/kafka/admin.properties")
    ).strip() or ",".join(f"{h}:9092" for h in kafka_hosts)
    rf = min(3, len(kafka_hosts))
    admin = f"--bootstrap-server {bootstrap} --command-config /etc/kafka/admin.properties"
    producer_props = "\n".join(
        [
            "acks=all",
            "enable.idempotence=true",
            "retries=2147483647",
            "delivery.timeout.ms=600000",
            "max.block.ms=600000",
        ]
    )
    prepare = (
        f"set -e; {env} rm -rf {WORK}; mkdir -p {WORK}; "
        f"cat /etc/kafka/admin.properties > {WORK}/producer.properties; "
        f"printf '%s\\n' '{producer_props}' >> {WORK}/producer.properties; "
        f"timeout 120 /opt/kafka/bin/kafka-topics.sh {admin} --create --if-not-exists --topic {PROBE_TOPIC} "
        f"--partitions 6 --replication-factor {rf}"
    )
    must(host_ssh(client, prepare, timeout_s=180))
    start = (
        f"{env} systemd-run --unit=fms-rolling-probe -p RuntimeMaxSec={MAX_PRODUCE_S + 120} "
        f"-p StandardOutput=file:{WORK}/producer.jsonl -p StandardError=file:{WORK}/producer.err "
        f"-E JAVA_HOME=$JAVA_HOME -E KAFKA_HEAP_OPTS=-Xmx256m "
        "/opt/kafka/bin/kafka-run-class.sh org.apache.kafka.tools.VerifiableProducer "
        f"--topic {PROBE_TOPIC} --bootstrap-server {bootstrap} --producer.config {WORK}/producer.properties "
        f"--throughput {PRODUCE_RATE} --max-messages {PRODUCE_RATE * MAX_PRODUCE_S}"
    )
    must(host_ssh(client, start))
    try:
        # Records flow before the first restart (bounded wait).
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            n = host_ssh(client, f"grep -c producer_send_success {WORK}/producer.jsonl || true").stdout
            if int(n.strip() or 0) >= PRODUCE_RATE:
                break
            time.sleep(3)
        else:
            err = host_ssh(client, f"tail -20 {WORK}/producer.err {WORK}/producer.jsonl").stdout
            pytest.fail(f"the probe producer did not start sending:\n{err}")
        run = converge.run_playbook("primary", "rolling_restart")
        print(f"\nrolling restart under load: {run.summary()}")
        assert run.ok, playbook_failures(run)
        time.sleep(10)  # records sent after the last restart
    finally:
        # SIGTERM: the tool flushes (bounded by delivery.timeout.ms), then prints tool_data.
        stop = "systemctl stop fms-rolling-probe; systemctl reset-failed fms-rolling-probe || true"
        host_ssh(client, stop, 700)
    events = [
        json.loads(line)
        for line in host_ssh(client, f"cat {WORK}/producer.jsonl", 120).stdout.splitlines()
        if line.startswith("{")
    ]
    acked = {e["value"] for e in events if e.get("name") == "producer_send_success"}
    failed = [e for e in events if e.get("name") == "producer_send_error"]
    tool = next((e for e in events if e.get("name") == "tool_data"), {})
    assert not failed, f"{len(failed)} failed sends during the rolling restart, e.g. {failed[:3]}"
    assert tool and tool.get("sent") == tool.get("acked") == len(acked), tool
    consume = (
        f"{env} timeout 300 /opt/kafka/bin/kafka-console-consumer.sh --bootstrap-server {bootstrap} "
        f"--consumer.config /etc/kafka/admin.properties --topic {PROBE_TOPIC} --from-beginning "
        f"--timeout-ms 30000 --max-messages {len(acked)} 2>/dev/null"
    )
    stored = set(host_ssh(client, consume, 360).stdout.split())
    lost = acked - stored
    print(
        f"rolling restart under load: {len(acked)} records acked over {time.monotonic() - started:.0f}s, "
        f"0 failed sends, {len(lost)} lost, {len(stored)} read back"
    )
    assert not lost, f"{len(lost)} acknowledged records were lost, e.g. {sorted(lost)[:5]}"
    delete = f"{env} timeout 120 /opt/kafka/bin/kafka-topics.sh {admin} --delete --topic {PROBE_TOPIC}"
    host_ssh(client, delete, 180)
