"""Faults under load on the converged lab: what operators fear, with an independent record of what was acked.

`make chaos` runs these scenarios on a fresh lab after the setting-change drill of
test_lab_converge.py, then the pipeline's conservation audit. Not in `make test`: on the 2-core
CI machine the lab suite with the two kill scenarios was heading for ~86 of the 90 minutes
(the drill alone fits); CI time has to be won back first (issue 18).

Modelled on Kafka's own system tests (replication_test: SIGKILL the leader repeatedly, every
acknowledged message must be consumed) and Jepsen's checking: the faults hit while the
collectors keep producing into the pipeline and Kafka's VerifiableProducer writes a probe
topic with acks=all (RF 3, min ISR 2 on the minimal profile's three brokers).

* Five broker SIGKILLs, each broker in turn and the active KRaft controller (the quorum
  leader) among them; each broker comes back (systemd restarts it) and its replicas rejoin
  every ISR before the next kill. Every record the probe got an ack for is read back exactly
  once by an independent consumer.
* The active controller cut off from every other host and client for 60 s (blackhole routes
  on the host, healed by the host itself when the cut's unit ends), then healed: the others
  elect a controller and lead its partitions, writes go on, every ack is read back once.
* Three SIGKILLs of the stream's driver while a micro-batch is running (its start is in the
  journal, its end is not); systemd restarts the driver, which replays the cut-off batch from
  the checkpoint and goes on. The lake's books for all of it are kept by the conservation
  audit of test_lab_pipeline.py, which runs after this module (the conftest orders it): every
  raw record exactly once - stored, dead-lettered or a counted duplicate.
* A DataNode SIGKILLed and kept down (a lost host) until the operator gets HdfsDataNodeDown:
  the stream keeps writing through the other DataNode without a restart, and once it is back
  HDFS re-replicates what was written meanwhile (the audit counts those records too).

Each scenario prints a JSON line with its figures (kills, recovery seconds, acked/lost/duplicated).
"""

from __future__ import annotations

import itertools
import json
import re
import time
import urllib.request

import chaos_report
import pytest
from fms_tools.fmsops.platform_contract import load as load_contract
from fms_tools.lab import alert_receiver, state
from kafka_probe import KafkaProbe
from lab_support import first_in_group, host_ssh, must, outputs, unit_restarts

pytestmark = [pytest.mark.lab, pytest.mark.slow, pytest.mark.chaos]

BROKER_KILLS = 5
DRIVER_KILLS = 3
RECOVERY_S = 300  # a broker back in every ISR / the stream past the replayed batch, per kill
PROBE_TOPIC = "fms.probe.broker-kills"
KAFKA_JMX = load_contract().port("kafka_jmx_exporter")
METRIC_LINE = re.compile(r"^([a-z_]+) ([0-9.eE+-]+)$", re.M)
CONTROLLER = "kafka_controller_kafkacontroller_"
REPLICAS = "kafka_server_replicamanager_"
BROKER_STATE = "kafka_server_kafkaserver_brokerstate"  # 3 = RUNNING


def _sigkill(host: str, unit: str) -> None:
    """SIGKILL every process of the unit at once, as a crash would (systemd sees a failure)."""
    must(host_ssh(host, f"systemctl kill --signal=SIGKILL {unit}"))


def _wait_restarted(host: str, unit: str, restarts_before: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        active = host_ssh(host, f"systemctl is-active {unit}").stdout.strip()
        if active == "active" and unit_restarts(host, unit) > restarts_before:
            return
        time.sleep(2)
    status = host_ssh(host, f"systemctl status {unit} --no-pager | tail -20").stdout
    pytest.fail(f"{unit} on {host} did not come back after SIGKILL:\n{status}")


# ---------------------------------------------------------------------------- brokers


class Kafka:
    """The cluster's state as its brokers' JMX exporters report it (the harness may scrape them, as
    Prometheus does): answers in milliseconds where an admin tool takes a JVM start per question."""

    def __init__(self, brokers: list[str]) -> None:
        self.brokers = brokers
        self.ips = {h: state.load_hosts()[h]["ip"] for h in brokers}

    def metrics(self, host: str) -> dict[str, float] | None:
        url = f"http://{self.ips[host]}:{KAFKA_JMX}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                text = resp.read().decode()
        except OSError:
            return None
        return {m[1]: float(m[2]) for m in METRIC_LINE.finditer(text)}

    def snapshot(self) -> dict[str, dict[str, float] | None]:
        return {h: self.metrics(h) for h in self.brokers}

    def active_controller(self) -> str:
        snap = self.snapshot()
        active = [h for h, m in snap.items() if m and m.get(f"{CONTROLLER}activecontrollercount") == 1]
        assert len(active) == 1, f"want one active controller, the exporters say {active}"
        return active[0]

    def problems(self) -> list[str]:
        """Why the cluster is not whole yet ([] = every broker running, registered, in every ISR)."""
        snap = self.snapshot()
        out = [f"{h}: exporter silent" for h, m in snap.items() if m is None]
        up = {h: m for h, m in snap.items() if m}
        out += [f"{h}: broker state {m.get(BROKER_STATE)}" for h, m in up.items() if m.get(BROKER_STATE) != 3]
        urp = sum(m.get(f"{REPLICAS}underreplicatedpartitions", 0) for m in up.values())
        out += [f"{urp:.0f} under-replicated partitions"] if urp else []
        controllers = [m for m in up.values() if m.get(f"{CONTROLLER}activecontrollercount") == 1]
        if len(controllers) != 1:
            out.append(f"{len(controllers)} active controllers")
        else:
            c = controllers[0]
            if c.get(f"{CONTROLLER}activebrokercount") != len(self.brokers):
                out.append(f"{c.get(f'{CONTROLLER}activebrokercount')} active brokers")
            for key in ("fencedbrokercount", "offlinepartitionscount"):
                if c.get(f"{CONTROLLER}{key}"):
                    out.append(f"{key} {c.get(f'{CONTROLLER}{key}'):.0f}")
        return out

    def wait_whole(self, deadline: float) -> None:
        problems: list[str] = []
        whole_since = None
        while time.monotonic() < deadline:
            problems = self.problems()
            if not problems:
                # twice, a moment apart: a leader notices a lost follower only when it is fenced
                if whole_since is not None and time.monotonic() - whole_since >= 2:
                    return
                whole_since = whole_since or time.monotonic()
            else:
                whole_since = None
            time.sleep(0.5)
        pytest.fail(f"Kafka is not whole again: {problems}")


def _node_id(host: str) -> int:
    return int(must(host_ssh(host, "sed -n 's/^node.id=//p' /etc/kafka/server.properties")).strip())


def _max_ack_gap_s(stamps: list[int]) -> float:
    return max((b - a for a, b in itertools.pairwise(stamps)), default=0) / 1000


def test_broker_sigkills_lose_no_acknowledged_record(converged):
    """SIGKILL each broker in turn (five kills, the quorum leader among them) under acks=all load."""
    brokers = sorted(outputs()["inventory_groups"]["kafka"])
    assert len(brokers) >= 3, f"the fault profile needs three brokers (RF 3, min ISR 2): {brokers}"
    node = {h: _node_id(h) for h in brokers}
    kafka = Kafka(brokers)
    kafka.wait_whole(time.monotonic() + RECOVERY_S)
    probe = KafkaProbe(brokers[0], PROBE_TOPIC, brokers=len(brokers), rate=200, max_s=900)
    started = time.monotonic()
    probe.start()
    kills: list[dict] = []
    timeline: list[tuple[float, str]] = []
    try:
        for i in range(BROKER_KILLS):
            leader = kafka.active_controller()
            previous = kills[-1]["host"] if kills else None
            if i in (0, BROKER_KILLS - 2):
                victim = leader
            else:  # each broker in turn: the least killed one, not the one just killed
                counts = {h: sum(k["host"] == h for k in kills) for h in brokers if h != previous}
                victim = min(counts, key=lambda h: (counts[h], brokers.index(h)))
            restarts = unit_restarts(victim, "kafka")
            acked_before = probe.acked_so_far()
            t0 = time.monotonic()
            timeline.append((time.time(), f"kill {victim}"))
            _sigkill(victim, "kafka")
            _wait_restarted(victim, "kafka", restarts, t0 + RECOVERY_S)
            back_s = time.monotonic() - t0
            kafka.wait_whole(t0 + RECOVERY_S)
            timeline.append((time.time(), "whole"))
            kills.append(
                {
                    "host": victim,
                    "node_id": node[victim],
                    "was_active_controller": victim == leader,
                    "back_s": round(back_s, 1),
                    "in_sync_s": round(time.monotonic() - t0, 1),
                    "acked_before": acked_before,
                }
            )
            print(f"kill {i + 1}/{BROKER_KILLS}: {json.dumps(kills[-1])}")
        time.sleep(5)  # records acked after the last recovery
    finally:
        result = probe.stop()
    acks = result.ack_times_ms
    report = {
        "scenario": "broker_sigkill",
        "kills": len(kills),
        "active_controller_kills": sum(k["was_active_controller"] for k in kills),
        "max_in_sync_s": max(k["in_sync_s"] for k in kills),
        "max_ack_gap_s": round(_max_ack_gap_s(acks), 1),
        **result.figures(),
        "seconds": round(time.monotonic() - started),
    }
    print(json.dumps(report))
    print(f"report and timeline: {chaos_report.write(report | {'kill_list': kills}, timeline, acks)}")
    assert {k["host"] for k in kills} == set(brokers), f"every broker must be killed: {kills}"
    assert report["active_controller_kills"] >= 1, f"the active controller must be killed: {kills}"
    acked_at_kills = [k["acked_before"] for k in kills]
    assert acked_at_kills == sorted(set(acked_at_kills)), f"writes must go on while a broker is down: {kills}"
    assert not result.failed, f"{len(result.failed)} sends failed, e.g. {result.failed[:3]}"
    result.assert_nothing_lost_or_duplicated()
    probe.delete_topic()


# ---------------------------------------------------------------------------- a broker cut off

CUT_S = 60
CUT_UNIT = "fms-fault-cut-off"
CUT_SCRIPT = "/run/fms-fault-cut-off.sh"
CUT_PROBE_TOPIC = "fms.probe.broker-cut-off"


def _cut_off(host: str, peers: list[str], seconds: int) -> None:
    """Cut `host` off from every address of its env (other hosts, the lab machine's gateways) for
    `seconds`: a blackhole route per peer, so nothing it sends reaches anyone and no connection
    to it completes. Run by a transient unit on the host that heals the cut when it ends, however
    it ends (ExecStopPost; RuntimeMaxSec bounds it): the cut heals itself even if this test dies."""
    routes = " ".join(f"{ip}/32" for ip in peers)
    script = f'#!/bin/sh\nfor net in {routes}; do ip route "$1" blackhole "$net" 2>/dev/null; done; true\n'
    must(
        host_ssh(
            host,
            f"printf '{script}' > {CUT_SCRIPT} && chmod 0700 {CUT_SCRIPT} && "
            f"systemctl reset-failed {CUT_UNIT} 2>/dev/null; "
            f"systemd-run --unit={CUT_UNIT} -p RuntimeMaxSec={seconds + 60} "
            f"-p 'ExecStopPost={CUT_SCRIPT} del' "
            # the first seconds let this ssh session (through the bastion) return before the cut
            f"/bin/sh -c 'sleep 2; {CUT_SCRIPT} add; sleep {seconds}'",
        )
    )


def _env_peers(host: str) -> list[str]:
    """Every address `host` can talk to in its env: the other hosts and the lab machine's gateways."""
    hosts = state.load_hosts()
    env = hosts[host]["env"]
    others = [r["ip"] for n, r in hosts.items() if r["env"] == env and n != host]
    gateways = [g.split("/")[0] for g in state.load_lab()["envs"][env]["gateways"]]
    return sorted(set(others) | set(gateways))


def test_a_broker_cut_off_for_a_minute_loses_no_acknowledged_record(converged):
    """The active controller cut off from every other host and client for 60 s under acks=all load,
    then healed: the others elect a controller and take over its partitions, no acknowledged
    record is lost or duplicated, and the cluster is whole again after the heal."""
    brokers = sorted(outputs()["inventory_groups"]["kafka"])
    assert len(brokers) >= 3, f"the fault profile needs three brokers (RF 3, min ISR 2): {brokers}"
    kafka = Kafka(brokers)
    kafka.wait_whole(time.monotonic() + RECOVERY_S)
    victim = kafka.active_controller()
    others = [b for b in brokers if b != victim]
    probe = KafkaProbe(others[0], CUT_PROBE_TOPIC, brokers=len(brokers), rate=200, max_s=600)
    started = time.monotonic()
    probe.start()
    try:
        acked_before = probe.acked_so_far()
        fault_at = time.time()
        t0 = time.monotonic()
        _cut_off(victim, _env_peers(victim), CUT_S)
        timeline = [(fault_at + 2, f"cut {victim}")]
        # the rest of the cluster elects a controller among themselves (the cut-off one may still
        # believe it leads: it hears nobody)
        new_controller, failover_s = None, None
        while time.monotonic() < t0 + CUT_S:
            snap = {h: kafka.metrics(h) for h in others}
            active = [h for h, m in snap.items() if m and m.get(f"{CONTROLLER}activecontrollercount") == 1]
            if active:
                new_controller, failover_s = active[0], time.monotonic() - t0
                timeline.append((time.time(), f"controller {active[0]}"))
                break
            time.sleep(0.5)
        # the cut is real: the lab machine no longer reaches the victim's exporter either
        silent = kafka.metrics(victim) is None
        while time.monotonic() < t0 + CUT_S + 3:  # the cut lasts CUT_S after its 2 s start
            time.sleep(1)
        acked_during = probe.acked_so_far() - acked_before
        healed = time.monotonic()
        timeline.append((time.time(), "healed"))
        gone = host_ssh(victim, f"systemctl is-active {CUT_UNIT}", 60).stdout.strip()
        kafka.wait_whole(healed + RECOVERY_S)
        whole_s = time.monotonic() - healed
        timeline.append((time.time(), "whole"))
        time.sleep(5)  # records acked after the heal
    finally:
        host_ssh(victim, f"systemctl stop {CUT_UNIT} 2>/dev/null; true", 60)  # heals, if still cut
        result = probe.stop()
    delivered = sorted(
        {
            f"{n.labels.get('alertname')}:{n.status}"
            for n in alert_receiver.read(alert_receiver.alerts_file(), fault_at)
        }
    )
    acks = result.ack_times_ms
    report = {
        "scenario": "broker_cut_off",
        "max_ack_gap_s": round(_max_ack_gap_s(acks), 1),
        "victim": victim,
        "cut_s": CUT_S,
        "new_controller": new_controller,
        "controller_failover_s": round(failover_s, 1) if failover_s is not None else None,
        "victim_silent_while_cut": silent,
        "acked_while_cut": acked_during,
        "whole_after_heal_s": round(whole_s, 1),
        "alerts_delivered": delivered,
        **result.figures(),
        "seconds": round(time.monotonic() - started),
    }
    print(json.dumps(report))
    print(f"report and timeline: {chaos_report.write(report, timeline, acks)}")
    assert silent, f"{victim} still answered the lab machine while cut off: {report}"
    assert gone != "active", "the cut must have healed by itself at its end"
    assert new_controller in others, f"the others elected no controller in {CUT_S}s: {report}"
    assert acked_during > 0, f"writes must go on while a broker is cut off: {report}"
    assert not result.failed, f"{len(result.failed)} sends failed, e.g. {result.failed[:3]}"
    result.assert_nothing_lost_or_duplicated()
    probe.delete_topic()


# ---------------------------------------------------------------------------- the stream's driver

BATCH_LINE = re.compile(r"batch (\d+): (started|in=)")


def _batch_events(host: str, since: str) -> list[tuple[int, str]]:
    """(batch id, 'started'|'in=') from the stream's journal since the given cursor time."""
    journal = f"journalctl -u fms-stream --since '{since}' -o cat --no-pager | grep -E 'batch [0-9]+: '"
    out = host_ssh(host, journal)
    return [(int(m.group(1)), m.group(2)) for m in BATCH_LINE.finditer(out.stdout)]


def _host_now(host: str) -> str:
    return must(host_ssh(host, "date '+%Y-%m-%d %H:%M:%S'")).strip()


def test_stream_driver_sigkills_mid_batch_are_replayed(converged):
    """SIGKILL the stream's driver three times while a batch runs; it replays that batch and goes on."""
    master = first_in_group("spark_master")
    assert must(host_ssh(master, "systemctl is-active fms-stream")).strip() == "active"
    kills: list[dict] = []
    timeline: list[tuple[float, str]] = []
    attempts = 0
    started = time.monotonic()
    while len(kills) < DRIVER_KILLS:
        attempts += 1
        assert attempts <= DRIVER_KILLS * 4, f"no batch could be caught running: {kills}"
        since = _host_now(master)
        # a batch that starts from now on and has not ended: kill while it runs
        deadline = time.monotonic() + RECOVERY_S
        running = None
        while time.monotonic() < deadline and running is None:
            events = _batch_events(master, since)
            started_ids = {b for b, what in events if what == "started"}
            ended_ids = {b for b, what in events if what == "in="}
            open_ids = sorted(started_ids - ended_ids)
            running = open_ids[-1] if open_ids else None
            if running is None:
                time.sleep(0.5)
        assert running is not None, f"the stream started no batch in {RECOVERY_S}s"
        restarts = unit_restarts(master, "fms-stream")
        t0, killed_at = time.monotonic(), time.time()
        _sigkill(master, "fms-stream")
        ended = {b for b, what in _batch_events(master, since) if what == "in="}
        if running in ended:  # it ended between our look and the kill: not mid-batch, try again
            _wait_restarted(master, "fms-stream", restarts, t0 + RECOVERY_S)
            continue
        _wait_restarted(master, "fms-stream", restarts, t0 + RECOVERY_S)
        restarted_at = _host_now(master)  # the new driver logs no batch before its unit is active
        # The restarted driver replays the cut-off batch (its offsets were logged before it ran),
        # then goes past it.
        replayed = past = None
        while time.monotonic() < t0 + RECOVERY_S and past is None:
            after = _batch_events(master, restarted_at)
            ids_started = [b for b, what in after if what == "started"]
            replayed = ids_started[0] if ids_started else None
            past = next((b for b, what in after if what == "in=" and b > running), None)
            if past is None:
                time.sleep(2)
        assert replayed == running, (
            f"the restarted driver began at {replayed}, not the cut-off batch {running}"
        )
        assert past is not None, f"the stream did not get past batch {running} in {RECOVERY_S}s"
        kills.append({"batch": running, "recovered_s": round(time.monotonic() - t0, 1)})
        timeline += [(killed_at, f"kill driver mid-batch {running}"), (time.time(), f"past batch {running}")]
        print(f"driver kill {len(kills)}/{DRIVER_KILLS}: {json.dumps(kills[-1])}")
    report = {
        "scenario": "stream_driver_sigkill_mid_batch",
        "kills": len(kills),
        "attempts": attempts,
        "max_recovered_s": max(k["recovered_s"] for k in kills),
        "seconds": round(time.monotonic() - started),
    }
    print(json.dumps(report))
    print(f"report: {chaos_report.write(report | {'kill_list': kills}, timeline)}")


# ---------------------------------------------------------------------------- HDFS DataNodes

DATANODE_UNIT = "hdfs-datanode"
# Down until the operator is told (HdfsDataNodeDown: the DataNode's exporter silent for 1 min), well
# short of the NameNode's ~10.5 min "dead" mark; bounded in any case. The NameNode's own stale
# count is recorded too: it changes only at its 5-minute heartbeat recheck (251 s after the kill in
# the first run, with HdfsDataNodeStale's `for: 2m` still to come - why HdfsDataNodeDown exists).
DATANODE_DOWN_MAX_S = 330
DATANODE_DOWN_MIN_S = 90  # longer than a micro-batch: the stream must write without it
DOWN_ALERT = "HdfsDataNodeDown"
NAMENODE_HTTP = load_contract().port("hdfs_namenode_http")


def _namenode_figures(namenode: str) -> dict[str, int]:
    """Live/stale/dead DataNodes and block health, from the NameNode's own JMX servlet."""
    beans = []
    for bean in ("FSNamesystemState", "FSNamesystem"):
        url = f"http://localhost:{NAMENODE_HTTP}/jmx?qry=Hadoop:service=NameNode,name={bean}"
        out = host_ssh(namenode, f'curl -sS --max-time 10 "{url}"', 60)
        if out.returncode != 0:
            return {}
        beans += json.loads(out.stdout).get("beans", [])
    merged = {k: v for b in beans for k, v in b.items() if isinstance(v, int)}
    keys = (
        "NumLiveDataNodes",
        "NumStaleDataNodes",
        "NumDeadDataNodes",
        "UnderReplicatedBlocks",
        "MissingBlocks",
    )
    return {k: merged[k] for k in keys if k in merged}


def _wait_hdfs_whole(namenode: str, datanodes: int, deadline: float) -> dict[str, int]:
    figures: dict[str, int] = {}
    while time.monotonic() < deadline:
        figures = _namenode_figures(namenode)
        if (
            figures.get("NumLiveDataNodes") == datanodes
            and figures.get("NumStaleDataNodes") == 0
            and figures.get("UnderReplicatedBlocks") == 0
            and figures.get("MissingBlocks") == 0
        ):
            return figures
        time.sleep(3)
    pytest.fail(f"HDFS not whole again within the deadline: {figures}")


def test_a_datanode_down_for_minutes_stops_no_batch_and_heals(converged):
    """A DataNode dies (SIGKILL, and it stays down as a lost host would) while the stream writes
    its Parquet to HDFS: the stream goes on writing through the other one without a restart,
    the operator gets HdfsDataNodeDown, and once the DataNode is back HDFS re-replicates every
    block written meanwhile (no missing, none under-replicated). The lake's books are kept by
    the conservation audit that runs after this module."""
    namenode = first_in_group("hdfs_namenode")
    datanodes = sorted(outputs()["inventory_groups"]["hdfs_datanode"])
    master = first_in_group("spark_master")
    assert len(datanodes) >= 2, f"the fault needs two DataNodes (replication 2): {datanodes}"
    before = _wait_hdfs_whole(namenode, len(datanodes), time.monotonic() + RECOVERY_S)
    victim = datanodes[-1]
    stream_restarts = unit_restarts(master, "fms-stream")
    since = _host_now(master)
    started = time.monotonic()
    fault_at = time.time()
    # SIGKILL, then stop: the stop only cancels systemd's restart (nothing is left to shut down)
    must(host_ssh(victim, f"systemctl kill --signal=SIGKILL {DATANODE_UNIT}; systemctl stop {DATANODE_UNIT}"))
    timeline: list[tuple[float, str]] = [(fault_at, f"kill {victim} DataNode")]
    stale_at = alert_at = None
    try:
        assert host_ssh(victim, f"systemctl is-active {DATANODE_UNIT}").stdout.strip() != "active"
        while time.monotonic() < started + DATANODE_DOWN_MAX_S:
            elapsed = time.monotonic() - started
            if stale_at is None and _namenode_figures(namenode).get("NumStaleDataNodes", 0) > 0:
                stale_at = elapsed
                timeline.append((time.time(), "NameNode: stale"))
            if alert_at is None and any(
                n.labels.get("alertname") == DOWN_ALERT and n.status == "firing"
                for n in alert_receiver.read(alert_receiver.alerts_file(), fault_at)
            ):
                alert_at = elapsed
                timeline.append((time.time(), f"{DOWN_ALERT} delivered"))
            if alert_at is not None and elapsed >= DATANODE_DOWN_MIN_S and stale_at is not None:
                break
            time.sleep(5)
        batches_while_down = sorted({b for b, what in _batch_events(master, since) if what == "in="})
    finally:
        host_ssh(victim, f"systemctl start {DATANODE_UNIT}", 120)
    down_s = time.monotonic() - started
    timeline.append((time.time(), f"start {victim} DataNode"))
    back = time.monotonic()
    after = _wait_hdfs_whole(namenode, len(datanodes), back + RECOVERY_S)
    whole_s = time.monotonic() - back
    timeline.append((time.time(), "HDFS whole"))
    later = sorted({b for b, what in _batch_events(master, since) if what == "in="})
    report = {
        "scenario": "datanode_down",
        "victim": victim,
        "down_s": round(down_s, 1),
        "stale_after_s": round(stale_at, 1) if stale_at is not None else None,
        "alert_after_s": round(alert_at, 1) if alert_at is not None else None,
        "batches_while_down": len(batches_while_down),
        "stream_restarts": unit_restarts(master, "fms-stream") - stream_restarts,
        "whole_after_start_s": round(whole_s, 1),
        "namenode_before": before,
        "namenode_after": after,
        "batches_after": len(later) - len(batches_while_down),
        "seconds": round(time.monotonic() - started),
    }
    print(json.dumps(report))
    print(f"report and timeline: {chaos_report.write(report, timeline)}")
    assert alert_at is not None, f"{DOWN_ALERT} was not delivered within {DATANODE_DOWN_MAX_S}s: {report}"
    assert len(batches_while_down) >= 2, f"the stream must keep writing without the DataNode: {report}"
    assert report["stream_restarts"] == 0, f"the stream's driver failed while a DataNode was down: {report}"
    assert report["batches_after"] >= 1, f"the stream stopped after the DataNode came back: {report}"
