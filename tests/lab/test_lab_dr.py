"""The DR standby on the lab: the second region converges as a standby, MirrorMaker 2 pulls the
primary's topics over the peering, the readiness pre-check passes - and fails, saying why, when
Terraform removes the peering.

Runs after the pipeline modules, on the converged primary whose collectors keep producing.
Oracle: the primary's own raw topic. Every record it holds at a snapshot must be on the standby,
in the same partition and order, exactly once (MM2 keeps partitions, order and timestamps; with
exactly-once source support a read_committed reader sees no record twice). Records are compared
by a digest of key and value computed on the broker host (timestamps are each broker's own:
the raw topic is stamped with LogAppendTime).

Marker `drill` (`make drill`): not in `make test` until the CI budget holds a second converge.
"""

from __future__ import annotations

import functools
import re
import time

import pytest
from fms_tools.fmsops import terraform
from fms_tools.fmsops.platform_contract import load as load_contract
from fms_tools.lab import converge, orchestrate
from kafka_probe import kafka_shell_env
from lab_support import PROFILE, first_in_group, host_ssh, must, outputs, playbook_failures, prometheus_api

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.drill]

KAFKA_BIN = "/opt/kafka/bin"
ADMIN_PROPERTIES = "/etc/kafka/admin.properties"
# Record separator of the console consumer's output: values may hold newlines (bad input does).
RECORD_SEP = r"\x1e\x1d"
DIGEST = (
    "python3 -c 'import hashlib,sys; "
    '[print(hashlib.sha1(r).hexdigest()) for r in sys.stdin.buffer.read().split(b"\\x1e\\x1d") if r]'
    "'"
)
CATCH_UP_S = 120  # the standby reads the snapshot within this (the RPO target is 30 s)
SCRAPE_WITHIN_S = 120


def _apply_without_peering(env_name: str, url: str, profile: str) -> dict[str, object]:
    return terraform.apply_env(env_name, url, profile, variables={"enable_peering": "false"})


@functools.cache
def _bootstrap(broker: str) -> str:
    """The broker's own client bootstrap (its admin.properties), read once per broker."""
    return must(host_ssh(broker, f"sed -n 's/^bootstrap.servers=//p' {ADMIN_PROPERTIES}")).strip()


def _offsets(broker: str, topic: str, time_arg: int) -> dict[int, int]:
    cmd = (
        f"{kafka_shell_env()} timeout 120 {KAFKA_BIN}/kafka-get-offsets.sh"
        f" --bootstrap-server {_bootstrap(broker)} --command-config {ADMIN_PROPERTIES}"
        f" --topic {topic} --time {time_arg}"
    )
    out = must(host_ssh(broker, cmd, 180))
    return {int(p): int(o) for p, o in re.findall(rf"^{re.escape(topic)}:(\d+):(\d+)$", out, re.M)}


def _digests(broker: str, topic: str, partition: int, count: int, committed: bool) -> list[str]:
    """Digests of the first `count` records of a partition, in order (read_committed on the standby)."""
    if count == 0:
        return []
    isolation = "--isolation-level read_committed " if committed else ""
    cmd = (
        f"{kafka_shell_env()} timeout 300 {KAFKA_BIN}/kafka-console-consumer.sh --bootstrap-server "
        f"{_bootstrap(broker)} --consumer.config {ADMIN_PROPERTIES} --topic {topic} --partition {partition} "
        f"--offset earliest --max-messages {count} --timeout-ms 60000 {isolation}"
        # Key and value, not the timestamp: the raw topic is stamped by the broker (LogAppendTime), so
        # each cluster stamps its own copy (the first make drill run: all 106,818 differed by that alone).
        "--property print.key=true "
        f"--property line.separator=$'{RECORD_SEP}' 2>/dev/null | {DIGEST}"
    )
    return must(host_ssh(broker, cmd, 360)).split()


def test_standby_mirrors_primary_and_its_precheck_says_why_without_the_peering(lab, converged, dr_applied):
    contract = load_contract()
    raw = contract.topic("raw").name
    dr_applied()
    started = time.monotonic()
    dr_hosts = orchestrate.up("dr", PROFILE, apply=True)
    print(f"\nDR up: {len(dr_hosts)} hosts, {time.monotonic() - started:.0f}s")

    site = converge.run_playbook("dr", "site")
    print(f"DR site.yml (standby, MirrorMaker 2 from primary): {site.summary()}")
    assert site.ok, playbook_failures(site)

    precheck = converge.run_playbook("dr", "dr_precheck")
    print(f"DR pre-check: {precheck.summary()}")
    assert precheck.ok, playbook_failures(precheck)

    # DR's own Prometheus scrapes MM2's lag (the metrics MirrorMakerReplicationLagHigh reads).
    lag = "kafka_connect_mirror_source_connector_replication_latency_ms"
    deadline = time.monotonic() + SCRAPE_WITHIN_S
    series: list = []
    while not series and time.monotonic() < deadline:
        series = prometheus_api(f"/api/v1/series?match%5B%5D={lag}", env="dr")["data"]
        if not series:
            time.sleep(10)
    assert series, f"DR's Prometheus has no {lag} series within {SCRAPE_WITHIN_S}s"
    print(f"DR Prometheus: {len(series)} {lag} series, topics {sorted({s['topic'] for s in series})}")

    # The oracle: what the primary's raw topic holds now must reach the standby, in order, once.
    primary_broker = first_in_group("kafka")
    dr_broker = outputs("dr")["inventory_groups"]["kafka"][0]
    first = _offsets(primary_broker, raw, -2)
    end = _offsets(primary_broker, raw, -1)
    assert end and sum(end.values()) > sum(first.values()), f"the primary's {raw} is empty: {end}"
    snapshot = time.monotonic()
    counts = {p: end[p] - first.get(p, 0) for p in end}
    mismatched: dict[int, str] = {}
    for p, n in sorted(counts.items()):
        want = _digests(primary_broker, raw, p, n, committed=False)
        assert len(want) == n, f"primary partition {p}: read {len(want)} of {n}"
        got = _digests(dr_broker, raw, p, n, committed=True)
        while got != want and time.monotonic() - snapshot < CATCH_UP_S:
            time.sleep(10)
            got = _digests(dr_broker, raw, p, n, committed=True)
        if got != want:
            missing = len(set(want) - set(got))
            mismatched[p] = f"{len(got)} read of {n}, {missing} missing, in order: {got == want[: len(got)]}"
    print(
        f"{raw}: {sum(counts.values())} records in {len(counts)} partitions on primary, the same on DR "
        "in order "
        f"after {time.monotonic() - snapshot:.0f}s"
        if not mismatched
        else f"mismatch: {mismatched}"
    )
    assert not mismatched, f"the standby's {raw} differs from the primary's: {mismatched}"

    # Without the peering (Terraform's own switch), the pre-check fails and names the cause.
    started = time.monotonic()
    orchestrate.up("dr", PROFILE, apply=_apply_without_peering)
    try:
        cut = converge.run_playbook("dr", "dr_precheck")
        print(f"DR pre-check without the peering: {cut.summary()} ({time.monotonic() - started:.0f}s)")
        assert not cut.ok
        log = " ".join(cut.log.read_text(errors="replace").split())  # the YAML callback folds long messages
        assert "no network path between the regions" in log and "peering" in log, playbook_failures(cut)
    finally:
        orchestrate.down(["dr"])
