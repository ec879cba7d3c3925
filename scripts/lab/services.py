"""Where the converged lab's services answer, for `lab.py status` and the end of `make lab`.

The ports are the roles' defaults (the lab overrides none of them). Written to
<lab>/services.json after a successful converge; `status` shows them per host;
`down` forgets the hosts it removes.
"""

from __future__ import annotations

import json
from typing import Any

from . import state

# inventory group -> (label, URL template); {ip} is the host's private address.
GROUP_URLS: dict[str, list[tuple[str, str]]] = {
    "kafka": [("kafka", "SASL_SSL {ip}:9092")],
    "hdfs_namenode": [("namenode-ui", "http://{ip}:9870/")],
    "spark_master": [
        ("spark-ui", "http://{ip}:8080/"),
        ("stream-ui", "http://{ip}:4040/"),
        ("stream-metrics", "http://{ip}:9311/metrics"),
    ],
    "monitoring": [("prometheus", "http://{ip}:9090/"), ("alertmanager", "http://{ip}:9093/")],
    "collector": [("collector-metrics", "http://{ip}:9310/metrics")],
}


def urls_by_host(env_name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for rec in state.load_hosts().values():
        if rec.get("env") != env_name:
            continue
        groups = rec.get("roles") or [rec.get("role")]
        urls = [f"{label}={tpl.format(ip=rec['ip'])}" for g in groups for label, tpl in GROUP_URLS.get(g, [])]
        if urls:
            out[rec["name"]] = urls
    return out


def record(env_name: str) -> None:
    """Merge this env's URLs into <lab>/services.json."""
    path = state.lab_dir() / "services.json"
    try:
        known: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    known.update(urls_by_host(env_name))
    path.write_text(json.dumps(known, indent=2, sort_keys=True))


def forget(names: list[str]) -> None:
    """Drop removed hosts: a later lab may give their names other addresses (stale URLs in `status`)."""
    path = state.lab_dir() / "services.json"
    try:
        known: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    for name in names:
        known.pop(name, None)
    path.write_text(json.dumps(known, indent=2, sort_keys=True))


def first_host(env_name: str, group: str) -> str | None:
    names = sorted(
        rec["name"]
        for rec in state.load_hosts().values()
        if rec.get("env") == env_name and group in (rec.get("roles") or [rec.get("role")])
    )
    return names[0] if names else None


def print_pipeline_steps(env_name: str) -> None:
    """What to look at once site.yml deployed the pipeline."""
    lab_dir = state.lab_dir()
    lab_env = "" if lab_dir == state.REPO / ".lab" else f"FMS_LAB_DIR={lab_dir} "
    master, collector, mon = (first_host(env_name, g) for g in ("spark_master", "collector", "monitoring"))
    secrets = lab_dir / "secrets" / env_name / "monitoring" / "prometheus-web.password"
    print("\nthe pipeline:")
    if collector:
        print(f"  collector:  fms-collector on {collector} simulates the fleet and sends to fms.sensor.raw")
        print(f"              {lab_env}scripts/lab.py ssh {collector} journalctl -u fms-collector -n 20")
    if master:
        print(f"  stream:     fms-stream on {master}: validated Parquet in hdfs:///fms/processed,")
        print("              dead letters in hdfs:///fms/dlq and fms.sensor.dlq; timer fms-hourly-summary")
        print(f"  prove it:   {lab_env}scripts/lab.py ssh {master} fms-spark-job audit")
        print("              (every raw record stored, dead-lettered or a counted duplicate: JSON, exit 0)")
    if mon:
        print(f"  dashboards: Prometheus on {mon} (user admin, password in {secrets});")
        print("              Grafana is not converged in the lab (no package source here)")
    print(f"  URLs:       {lab_env}scripts/lab.py status (SERVICES column)")
