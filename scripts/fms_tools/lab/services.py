"""Where the converged lab's services answer, for `fms-lab status` and the end of `make lab`.

The ports are the platform contract's (platform.yml), which the roles listen on
(the lab overrides none of them). Prometheus and Alertmanager answer over HTTPS
only, with a certificate from the env's site CA (<lab>/secrets/<env>/pki/ca.crt).
Written to <lab>/services.json after a successful converge; `status` shows them
per host; `down` forgets the hosts it removes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fms_tools.fmsops.platform_contract import load as load_platform

from . import converge, state

# inventory group -> (label, URL template); {ip} is the host's private address, any other
# {name} the port of that name in the platform contract.
GROUP_URLS: dict[str, list[tuple[str, str]]] = {
    "kafka": [("kafka", "SASL_SSL {ip}:{kafka_client}")],
    "hdfs_namenode": [("namenode-ui", "http://{ip}:{hdfs_namenode_http}/")],
    "spark_master": [
        ("spark-ui", "http://{ip}:{spark_master_ui}/"),
        ("stream-ui", "http://{ip}:{spark_driver_ui}/"),
        ("stream-metrics", "http://{ip}:{stream_metrics}/metrics"),
    ],
    "monitoring": [
        ("prometheus", "https://{ip}:{prometheus}/"),
        ("alertmanager", "https://{ip}:{alertmanager}/"),
    ],
    "collector": [("collector-metrics", "http://{ip}:{collector_metrics}/metrics")],
}


def site_ca(env_name: str) -> Path:
    """The env's site CA certificate (created by the first converge), which Prometheus' and
    Alertmanager's certificates chain to: clients on the lab machine verify against it."""
    return converge.secrets_dir(env_name) / "pki" / "ca.crt"


def urls_by_host(env_name: str) -> dict[str, list[str]]:
    from fms_tools.fmsops import platform_contract  # lazily: PyYAML, only once hosts exist

    ports = {name: port.port for name, port in platform_contract.load().ports.items()}
    out: dict[str, list[str]] = {}
    for rec in state.load_hosts().values():
        if rec.get("env") != env_name:
            continue
        urls = [
            f"{label}={tpl.format(ip=rec['ip'], **ports)}"
            for g in state.host_groups(rec)
            for label, tpl in GROUP_URLS.get(g, [])
        ]
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
        if rec.get("env") == env_name and group in state.host_groups(rec)
    )
    return names[0] if names else None


def print_pipeline_steps(env_name: str) -> None:
    """What to look at once site.yml deployed the pipeline."""
    lab_dir = state.lab_dir()
    lab_env = "" if lab_dir == state.REPO / ".lab" else f"FMS_LAB_DIR={lab_dir} "
    master, collector, mon = (first_host(env_name, g) for g in ("spark_master", "collector", "monitoring"))
    secrets = converge.secrets_dir(env_name) / "monitoring" / "prometheus-web.password"
    raw, dlq = (load_platform().topic(key).name for key in ("raw", "dlq"))
    print("\nthe pipeline:")
    if collector:
        print(f"  collector:  fms-collector on {collector} simulates the fleet and sends to {raw}")
        print(f"              {lab_env}.venv/bin/fms-lab ssh {collector} journalctl -u fms-collector -n 20")
    if master:
        print(f"  stream:     fms-stream on {master}: validated Parquet in hdfs:///fms/processed,")
        print(f"              dead letters in hdfs:///fms/dlq and {dlq}; timer fms-hourly-summary")
        print(f"  prove it:   {lab_env}.venv/bin/fms-lab ssh {master} fms-spark-job audit")
        print("              (every raw record stored, dead-lettered or a counted duplicate: JSON, exit 0)")
    if mon:
        print(f"  dashboards: Prometheus on {mon} over HTTPS (user admin, password in {secrets};")
        print(f"              the certificate is from the site CA {site_ca(env_name)})")
        print("              Grafana is not converged in the lab (no package source here)")
    print(f"  URLs:       {lab_env}.venv/bin/fms-lab status (SERVICES column)")
