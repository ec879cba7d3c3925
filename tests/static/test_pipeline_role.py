"""Static checks of the pipeline deployment (roles/fms_pipeline, ansible/pipeline.yml), no hosts needed.

- lint (yamllint, ansible-lint production profile, ``--syntax-check``) of the role and the
  playbook runs with every other role and playbook in test_ansible_lint.py;
- rendering: every template of the role rendered by Ansible itself (connection local) with the
  repository's real group_vars against a sample inventory of two collectors and a Spark master,
  then checked with the jobs' own loaders: collector.yml through fms_jobs.collector.config,
  stream.yml through fms_jobs.streaming.config, the batch jobs' argument files through the jobs'
  argument parsers, the units with ``systemd-analyze verify`` (and a key check without it), and the
  spark-submit command lines (master, client mode, connector jars, --py-files);
- consistency: argument specs document every default; pinned dependencies equal requirements.txt;
  connector jars, HDFS paths, Kafka users/ACLs and metrics ports match what the kafka, spark, hdfs
  and prometheus roles provide;
- the control-machine build: reproducible, and a second run builds nothing;
- preflight: bad variables and an inventory without a Spark master stop ansible/pipeline.yml before
  any host is contacted.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from ansible_support import BIN, ansible_env
from fms_tools.fmsops.platform_contract import load as load_platform

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
ROLES_DIR = REPO / "roles"
ROLE = ROLES_DIR / "fms_pipeline"
PLAYBOOK = ANSIBLE_DIR / "pipeline.yml"
PREFLIGHT_PLAY = "Pipeline preflight - check variables and inventory"

COLLECTORS = ("fms-test-collector-1", "fms-test-collector-2")
MASTER = "fms-test-spark_master-1"
UNITS = ("fms-collector.service", "fms-stream.service", "fms-hourly-summary.service", "fms-archive.service")


def _layout(collectors: int = 2, spark_master: bool = True) -> dict[str, Any]:
    def ip(n: int) -> str:
        return f"192.0.2.{n}"

    kafka = {f"fms-test-kafka-{i}": {"ansible_host": ip(10 + i)} for i in range(1, 4)}
    children: dict[str, Any] = {
        "kafka": {"hosts": kafka},
        "kafka_controller": {"hosts": {name: {} for name in kafka}},
        "hdfs_namenode": {"hosts": {"fms-test-hdfs_namenode-1": {"ansible_host": ip(31)}}},
        "hdfs_datanode": {"hosts": {"fms-test-hdfs_datanode-1": {"ansible_host": ip(32)}}},
        "spark_worker": {"hosts": {"fms-test-spark_worker-1": {"ansible_host": ip(42)}}},
        "monitoring": {"hosts": {"fms-test-monitoring-1": {"ansible_host": ip(51)}}},
        "collector": {"hosts": {COLLECTORS[i]: {"ansible_host": ip(61 + i)} for i in range(collectors)}},
    }
    if spark_master:
        children["spark_master"] = {"hosts": {MASTER: {"ansible_host": ip(41)}}}
    return {
        "all": {
            "vars": {
                "ansible_user": "root",
                "ansible_ssh_common_args": "-o ConnectTimeout=3 -o BatchMode=yes",
                "fms_env": "lab",
            },
            "children": children,
        }
    }


def _write_inventory(directory: Path, layout: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "inventory.yml"
    path.write_text(yaml.safe_dump(layout), encoding="utf-8")
    return path


def _load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _defaults() -> dict[str, Any]:
    return yaml.safe_load((ROLE / "defaults" / "main.yml").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- lint


def test_playbook_plays() -> None:
    """Preflight first (connection-less), the recorded site role (read-only, as in site.yml), then the
    Kafka bootstrap, then the role on both groups."""
    plays = yaml.safe_load(PLAYBOOK.read_text(encoding="utf-8"))
    assert plays[0]["name"].startswith(PREFLIGHT_PLAY) and plays[0]["gather_facts"] is False
    hosts = [p["hosts"] for p in plays]
    assert hosts == ["collector:spark_master", "collector:spark_master", "kafka", "spark_master", "collector"]
    check = plays[1]["tasks"][0]["ansible.builtin.include_role"]
    assert check == {"name": "common", "tasks_from": "site_role_check"} and plays[1]["any_errors_fatal"]
    for play in plays[3:]:
        assert [r["role"] for r in play["roles"]] == ["fms_pipeline"]


# --------------------------------------------------------------------------- consistency


def test_every_default_is_described_in_the_argument_spec() -> None:
    defaults = _defaults()
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))
    options = specs["argument_specs"]["main"]["options"]
    # Site-wide variables the role reads (fms_site_role) live in ansible/group_vars/all.yml.
    site = yaml.safe_load((ANSIBLE_DIR / "group_vars" / "all.yml").read_text(encoding="utf-8"))
    assert sorted(set(defaults) - set(options)) == [], "defaults without an argument spec"
    assert sorted(set(options) - set(defaults) - set(site)) == [], "argument specs without a default"
    for name, spec in options.items():
        assert spec.get("type") and spec.get("description"), name
        if "default" in spec:
            assert spec["default"] == defaults[name], (
                f"{name}: spec default {spec['default']!r} != {defaults[name]!r}"
            )
        if "choices" in spec and name in defaults and "{{" not in str(defaults[name]):
            assert defaults[name] in spec["choices"], name
    for entry in ("preflight", "facts", "service", "promote", "demote"):
        assert specs["argument_specs"][entry]["options"] == options


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line.strip())
        if m:
            pins[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return pins


def test_runtime_pins_match_requirements_txt() -> None:
    role_pins = _pins(_defaults()["fms_pipeline_python_requirements"])
    repo_pins = _pins((REPO / "requirements.txt").read_text(encoding="utf-8").splitlines())
    for name in ("confluent-kafka", "prometheus-client", "pyyaml", "requests"):
        assert name in role_pins, f"{name} is not installed on the hosts"
    for name, version in role_pins.items():
        assert repo_pins.get(name) == version, (
            f"{name}=={version} but requirements.txt pins {repo_pins.get(name)}"
        )
    declared = re.findall(
        r'"([A-Za-z0-9_.-]+)"',
        re.search(r"dependencies = \[(.*?)\]", (REPO / "jobs" / "pyproject.toml").read_text())[1],
    )
    assert {re.sub(r"[-_.]+", "-", d).lower() for d in declared} <= set(role_pins)


def test_platform_roles_provide_what_the_pipeline_uses() -> None:
    defaults = _defaults()
    spark = yaml.safe_load((ROLES_DIR / "spark" / "defaults" / "main.yml").read_text())
    jars = defaults["fms_pipeline_kafka_connector_jars"] + defaults["fms_pipeline_s3a_jars"]
    assert set(jars) <= set(spark["spark_connector_jars"]), "the spark role does not install these jars"
    assert spark["spark_user"] == defaults["fms_pipeline_spark_group"] == "spark"

    kafka = yaml.safe_load((ROLES_DIR / "kafka" / "defaults" / "main.yml").read_text())
    acls = {
        (a["principal"], a.get("resource_name"), op) for a in kafka["kafka_acls"] for op in a["operations"]
    }
    raw, dlq = "{{ kafka_topic_raw }}", "{{ kafka_topic_dlq }}"
    assert {("User:collector", raw, "Write"), ("User:collector", None, "IdempotentWrite")} <= acls
    assert {
        ("User:spark", raw, "Read"),
        ("User:spark", dlq, "Write"),
        ("User:spark", None, "IdempotentWrite"),
    } <= acls
    # Spark's Kafka source consumer groups (the kafka role takes the prefixes from platform.yml;
    # tests/static/test_platform_contract.py renders them)
    assert "spark-kafka-" in load_platform().topic("raw").consumer_groups
    assert {t["name"] for t in kafka["kafka_topics"]} == {raw, dlq}
    group_all = yaml.safe_load((ANSIBLE_DIR / "group_vars" / "all.yml").read_text())
    assert {"collector", "spark"} <= set(group_all["kafka_scram_usernames"])

    hdfs = yaml.safe_load((ROLES_DIR / "hdfs" / "defaults" / "main.yml").read_text())
    dirs = {d["path"]: d for d in hdfs["hdfs_directories"]}
    for path in ("/fms/processed", "/fms/dlq", "/fms/checkpoints", "/fms/curated"):
        assert dirs[path]["owner"] == "{{ hdfs_pipeline_user }}", path
    assert group_all["hdfs_pipeline_user"] == "spark"

    prom = yaml.safe_load((ROLES_DIR / "prometheus" / "defaults" / "main.yml").read_text())
    assert prom["prometheus_collector_port"] == defaults["fms_pipeline_collector_metrics_port"]
    assert prom["prometheus_stream_driver_port"] == defaults["fms_pipeline_stream_metrics_port"]
    assert prom["prometheus_stream_driver_group"] == "spark_master"
    scrape = (ROLES_DIR / "prometheus" / "templates" / "prometheus.yml.j2").read_text()
    assert "job_name: fms_collector" in scrape and "job_name: fms_stream" in scrape


# --------------------------------------------------------------------------- rendering

RENDER_PLAYBOOK = """
- name: Render the fms_pipeline templates
  hosts: collector:spark_master
  gather_facts: false
  vars:
    out: "{{ render_dir }}/{{ inventory_hostname }}"
    tpl: "{{ roles_dir }}/fms_pipeline/templates"
  tasks:
    - name: Preflight and facts of the role
      ansible.builtin.include_role:
        name: fms_pipeline
        tasks_from: preflight
        public: true

    - name: Output directory
      ansible.builtin.file:
        path: "{{ out }}"
        state: directory
        mode: "0755"

    - name: Collector files
      ansible.builtin.template:
        src: "{{ tpl }}/{{ item.src }}"
        dest: "{{ out }}/{{ item.dest }}"
        mode: "0644"
      loop:
        - {src: collector.yml.j2, dest: collector.yml}
        - {src: fms-collector.service.j2, dest: fms-collector.service}
      when: fms_pipeline_collector_active

    - name: Collector password (as the role installs it)
      ansible.builtin.copy:
        content: "{{ kafka_scram_passwords[fms_pipeline_collector_kafka_user] }}\\n"
        dest: "{{ out }}/collector.password"
        mode: "0600"
      when: fms_pipeline_collector_active

    - name: Spark job configurations
      ansible.builtin.template:
        src: "{{ tpl }}/{{ item.src }}"
        dest: "{{ out }}/{{ item.dest }}"
        mode: "0644"
      loop:
        - {src: stream.yml.j2, dest: stream.yml}
        - {src: hourly-summary.args.j2, dest: hourly-summary.args}
        - {src: archive.args.j2, dest: archive.args}
      when: fms_pipeline_is_spark_master

    - name: Streaming job password (as the role installs it)
      ansible.builtin.copy:
        content: "{{ kafka_scram_passwords[fms_pipeline_stream_kafka_user] }}\\n"
        dest: "{{ out }}/stream.password"
        mode: "0600"
      when: fms_pipeline_is_spark_master

    - name: Spark job units
      ansible.builtin.template:
        src: "{{ tpl }}/{{ 'fms-stream.service.j2' if item == 'stream' else 'fms-batch.service.j2' }}"
        dest: "{{ out }}/{{ fms_pipeline_spark_jobs[item].unit }}.service"
        mode: "0644"
      loop: "{{ fms_pipeline_spark_enabled_jobs }}"
      vars:
        fms_pipeline_job: "{{ item }}"
      when: fms_pipeline_is_spark_master

    - name: Batch job timers
      ansible.builtin.template:
        src: "{{ tpl }}/fms-batch.timer.j2"
        dest: "{{ out }}/{{ fms_pipeline_spark_jobs[item].unit }}.timer"
        mode: "0644"
      loop: "{{ fms_pipeline_spark_enabled_jobs | difference(['stream']) }}"
      vars:
        fms_pipeline_job: "{{ item }}"
      when: fms_pipeline_is_spark_master

    - name: Job runner
      ansible.builtin.template:
        src: "{{ tpl }}/fms-spark-job.j2"
        dest: "{{ out }}/fms-spark-job"
        mode: "0755"
      when: fms_pipeline_is_spark_master

    - name: Derived facts
      ansible.builtin.copy:
        content: >-
          {{ {'slice': fms_pipeline_collector_slice, 'submit': fms_pipeline_submit_argv,
              'timers': fms_pipeline_timers} | to_json }}
        dest: "{{ out }}/facts.json"
        mode: "0644"
"""


def _render(tmp: Path, layout: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    """Render the role's templates for every pipeline host into tmp/out/<host>/ with the real group_vars."""
    inv_dir = tmp / "inventory"
    inventory = _write_inventory(inv_dir, layout)
    # inventory-adjacent group_vars: the repository's own ansible/group_vars
    (inv_dir / "group_vars").symlink_to(ANSIBLE_DIR / "group_vars")
    playbook = tmp / "render.yml"
    playbook.write_text(RENDER_PLAYBOOK, encoding="utf-8")
    return subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(inventory),
            str(playbook),
            "-e",
            f"render_dir={tmp / 'out'}",
            "-e",
            f"roles_dir={ROLES_DIR}",
            "-e",
            f"fms_secrets_dir={tmp / 'secrets'}",
            "-e",
            "ansible_connection=local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=ansible_env(),
        timeout=600,
    )


# Realistic site settings on top of the defaults: the archive enabled with lake
# buckets from the Terraform output, and install paths under the render directory
# so that systemd-analyze finds the executables the units name.
SITE_VARS = {
    "fms_pipeline_lake_buckets": {"processed": "fms-lab-processed", "curated": "fms-lab-curated"},
    "fms_pipeline_archive_s3_endpoint": "http://198.18.0.1:5000",
    "fms_pipeline_archive_s3_path_style": True,
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("pipeline-render")
    stub = tmp / "stub"
    site = dict(
        SITE_VARS,
        fms_pipeline_install_dir=str(stub / "opt/fms-jobs"),
        fms_pipeline_spark_home=str(stub / "opt/spark"),
        fms_pipeline_spark_state_dir=str(stub / "var/lib/fms-jobs"),
    )
    extra = tmp / "site.yml"
    extra.write_text(yaml.safe_dump(site), encoding="utf-8")
    result = _render(tmp, _layout(), "-e", f"@{extra}")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    (stub / "var/lib/fms-jobs").mkdir(parents=True)
    for exe in (
        "opt/fms-jobs/venv/bin/fms-collector",
        "opt/fms-jobs/venv/bin/python",
        "opt/spark/bin/spark-submit",
    ):
        path = stub / exe
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
        path.chmod(0o755)
    return tmp


def _out(rendered: Path, host: str) -> Path:
    return rendered / "out" / host


def _facts(rendered: Path, host: str) -> dict[str, Any]:
    return json.loads((_out(rendered, host) / "facts.json").read_text())


def test_render_produces_every_file(rendered: Path) -> None:
    for host in COLLECTORS:
        names = {p.name for p in _out(rendered, host).iterdir()}
        assert {"collector.yml", "fms-collector.service"} <= names
        assert not names & {"stream.yml", "fms-stream.service"}
    names = {p.name for p in _out(rendered, MASTER).iterdir()}
    assert {
        "stream.yml",
        "hourly-summary.args",
        "archive.args",
        "fms-stream.service",
        "fms-hourly-summary.service",
        "fms-hourly-summary.timer",
        "fms-archive.service",
        "fms-archive.timer",
        "fms-spark-job",
    } <= names
    assert "collector.yml" not in names


def _with_password_file(config: Path, password_file: Path, tmp_path: Path) -> Path:
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["kafka"]["sasl_password_file"] = str(password_file)
    local = tmp_path / config.name
    local.write_text(yaml.safe_dump(data), encoding="utf-8")
    return local


def test_collector_config_loads_with_the_collectors_loader(
    rendered: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fms_jobs.collector.config import load_config
    from fms_jobs.collector.producer import producer_config

    monkeypatch.delenv("FMS_KAFKA_SASL_PASSWORD", raising=False)
    monkeypatch.delenv("FMS_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    slices = []
    for host in COLLECTORS:
        out = _out(rendered, host)
        raw = yaml.safe_load((out / "collector.yml").read_text())
        assert raw["kafka"]["sasl_password_file"] == "/etc/fms/secrets/kafka-collector.password"
        assert raw["kafka"]["ssl_ca_location"] == "/etc/fms/pki/ca.crt"  # the common role's site CA
        cfg = load_config(_with_password_file(out / "collector.yml", out / "collector.password", tmp_path))
        k = cfg.kafka
        assert cfg.source == "simulator"
        assert k.security_protocol == "SASL_SSL" and k.sasl_mechanism == "SCRAM-SHA-512"
        assert k.sasl_username == "collector" and k.topic == load_platform().topic("raw").name
        assert k.bootstrap_servers == "fms-test-kafka-1:9092,fms-test-kafka-2:9092,fms-test-kafka-3:9092"
        assert k.acks == "all" and k.enable_idempotence
        assert cfg.metrics.port == 9310
        # the password the collector gets is the kafka role's SCRAM secret of the site
        secret = (rendered / "secrets" / "kafka" / "scram-collector.password").read_text().strip()
        assert (out / "collector.password").read_text().strip() == secret
        conf = producer_config(k)
        assert conf["sasl.password"] == secret and conf["ssl.ca.location"] == "/etc/fms/pki/ca.crt"
        s = cfg.simulator
        slices.append(range(s.first_device_id, s.first_device_id + s.devices))
        assert s.interval_s == 10.0 and s.rate is None
    # two collectors split the lab's 1,000 devices without overlap or gap
    assert [(r.start, r.stop) for r in slices] == [(1, 501), (501, 1001)]


def test_collector_http_mode_and_rate_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fms_jobs.collector.config import load_config

    monkeypatch.setenv("FMS_KAFKA_SASL_PASSWORD", "from-the-environment")
    monkeypatch.delenv("FMS_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    layout = _layout(collectors=2, spark_master=False)
    result = _render(
        tmp_path,
        layout,
        "-e",
        "fms_pipeline_stream_enabled=false fms_pipeline_collector_source=http",
        "-e",
        "fms_pipeline_collector_devices=7",
        "-e",
        "fms_pipeline_collector_http_base_url=http://fms-api.internal:8080",
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    specs = []
    for host in COLLECTORS:
        data = yaml.safe_load((_out(tmp_path, host) / "collector.yml").read_text())
        data["kafka"].pop("sasl_password_file")
        local = tmp_path / f"{host}.yml"
        local.write_text(yaml.safe_dump(data))
        cfg = load_config(local)
        assert cfg.source == "http" and cfg.http.base_url == "http://fms-api.internal:8080"
        specs.append(cfg.http.devices)
    assert specs == ["1-4", "5-7"]


def test_stream_config_loads_with_the_streaming_loader(rendered: Path, tmp_path: Path) -> None:
    from fms_jobs.streaming.config import kafka_client_options, load_stream_config

    out = _out(rendered, MASTER)
    cfg = load_stream_config(str(_with_password_file(out / "stream.yml", out / "stream.password", tmp_path)))
    nn = "hdfs://fms-test-hdfs-namenode-1:8020"
    assert cfg.paths.processed == f"{nn}/fms/processed"
    assert cfg.paths.dlq == f"{nn}/fms/dlq"
    assert cfg.paths.checkpoint == f"{nn}/fms/checkpoints/stream"
    topics = load_platform()
    assert (cfg.kafka.topic, cfg.kafka.dlq_topic) == (topics.topic("raw").name, topics.topic("dlq").name)
    assert cfg.metrics.port == 9311 and cfg.trigger.processing_time == "2 seconds"
    secret = (rendered / "secrets" / "kafka" / "scram-spark.password").read_text().strip()
    opts = kafka_client_options(cfg.kafka)
    assert opts["kafka.security.protocol"] == "SASL_SSL" and opts["kafka.sasl.mechanism"] == "SCRAM-SHA-512"
    assert f'username="spark" password="{secret}"' in opts["kafka.sasl.jaas.config"]
    assert opts["kafka.ssl.truststore.location"] == "/etc/fms/pki/ca.crt"


def _unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """systemd unit file -> {section: {key: [values]}} (continuation lines joined)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        m = re.match(r"^\[(\w+)\]$", line)
        if m:
            current = sections.setdefault(m.group(1), {})
            continue
        assert current is not None and "=" in line, f"{path.name}: bad line {line!r}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def _exec_start(path: Path) -> list[str]:
    value = _unit(path)["Service"]["ExecStart"][0]
    return [a.replace("$$", "$").replace("%%", "%") for a in shlex.split(value)]


@pytest.mark.parametrize("unit", UNITS)
def test_units_have_the_required_keys(rendered: Path, unit: str) -> None:
    host = COLLECTORS[0] if unit == "fms-collector.service" else MASTER
    u = _unit(_out(rendered, host) / unit)
    svc = u["Service"]
    assert u["Unit"]["Description"] and svc["ExecStart"] and svc["User"][0] not in ("", "root")
    assert svc["NoNewPrivileges"] == ["true"] and svc["ProtectSystem"] == ["strict"]
    assert svc["CapabilityBoundingSet"] == [""]
    if unit in ("fms-collector.service", "fms-stream.service"):
        assert svc["Type"] == ["simple"] and svc["Restart"] == ["on-failure"]
        # an outage longer than any start limit must not leave the pipeline down once it passes
        assert u["Unit"]["StartLimitIntervalSec"] == ["0"] and svc["RestartPreventExitStatus"] == ["1"]
        assert u["Install"]["WantedBy"] == ["multi-user.target"]
    else:
        assert svc["Type"] == ["oneshot"] and "Install" not in u
        timer = _unit(_out(rendered, host) / unit.replace(".service", ".timer"))
        assert timer["Timer"]["Unit"] == [unit] and timer["Timer"]["Persistent"] == ["true"]
        assert timer["Install"]["WantedBy"] == ["timers.target"]
    if unit == "fms-collector.service":
        assert svc["User"] == ["fms-collector"]
    else:
        assert svc["User"] == ["spark"] and svc["Group"] == ["spark"]


def test_timer_schedules(rendered: Path) -> None:
    hourly = _unit(_out(rendered, MASTER) / "fms-hourly-summary.timer")["Timer"]["OnCalendar"][0]
    archive = _unit(_out(rendered, MASTER) / "fms-archive.timer")["Timer"]["OnCalendar"][0]
    assert re.fullmatch(r"\*-\*-\* \*:0[1-9]:00", hourly), hourly  # hourly, a few minutes past
    assert re.fullmatch(r"\*-\*-\* \d\d:\d\d:00", archive), archive  # daily
    if shutil.which("systemd-analyze"):
        for spec in (hourly, archive):
            result = subprocess.run(["systemd-analyze", "calendar", spec], capture_output=True, text=True)
            assert result.returncode == 0, result.stderr


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_systemd_analyze_verify(rendered: Path, tmp_path: Path) -> None:
    units = [_out(rendered, COLLECTORS[0]) / "fms-collector.service"]
    units += sorted(p for p in _out(rendered, MASTER).iterdir() if p.suffix in (".service", ".timer"))
    # a timer is verified together with its service (same directory)
    for unit in units:
        shutil.copy(unit, tmp_path / unit.name)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(tmp_path / u.name) for u in units)],
        capture_output=True,
        text=True,
        env=dict(os.environ, SYSTEMD_LOG_LEVEL="warning"),
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        # the users exist only on the hosts (created by the role / the common role)
        if line.strip() and not re.search(r"Failed to resolve (user|group)|unknown user|unknown group", line)
    ]
    assert result.returncode == 0 or not problems, "\n".join(problems)
    assert not problems, "\n".join(problems)


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def _confs(argv: list[str]) -> dict[str, str]:
    return dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--conf")


def test_stream_spark_submit_command_line(rendered: Path) -> None:
    argv = _exec_start(_out(rendered, MASTER) / "fms-stream.service")
    stub = rendered / "stub"
    assert argv[0] == f"{stub}/opt/spark/bin/spark-submit"
    assert _option(argv, "--master") == "spark://fms-test-spark-master-1:7077"
    assert _option(argv, "--deploy-mode") == "client"
    assert _option(argv, "--py-files") == f"{stub}/opt/fms-jobs/lib/fms_jobs.zip"
    jars = _option(argv, "--jars").split(",")
    assert f"local:{stub}/opt/spark/jars/spark-sql-kafka-0-10_2.12-3.5.7.jar" in jars
    assert f"local:{stub}/opt/spark/jars/kafka-clients-3.4.1.jar" in jars
    conf = _confs(argv)
    # lab sizes: one 2-core executor, leaving a core slot and memory of the lab worker to the batch jobs
    assert conf["spark.cores.max"] == "2" and conf["spark.executor.cores"] == "2"
    assert conf["spark.sql.shuffle.partitions"] == "4"
    ports = [
        int(conf[k])
        for k in ("spark.driver.port", "spark.driver.blockManager.port", "spark.blockManager.port")
    ]
    rpc = load_platform().ports["spark_rpc"]  # the Spark RPC range the security groups open
    assert all(rpc.covers(p) for p in ports), ports
    launcher = argv.index(f"{stub}/opt/fms-jobs/bin/fms_spark_main.py")
    assert argv[launcher + 1 :] == ["fms_jobs.streaming", "--config", "/etc/fms/stream.yml"]
    svc = _unit(_out(rendered, MASTER) / "fms-stream.service")["Service"]
    assert f"PYSPARK_DRIVER_PYTHON={stub}/opt/fms-jobs/venv/bin/python" in svc["Environment"]
    assert "SPARK_CONF_DIR=/etc/spark" in svc["Environment"]


def _job_main(module: str, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Run a batch job's main() up to its Spark session: the parser accepted argv."""
    import fms_jobs.sparkutil.session as session

    class Reached(Exception):
        pass

    def fake_session(*args: object, **kwargs: object) -> None:
        raise Reached

    monkeypatch.setattr(session, "build_session", fake_session)
    job = importlib.import_module(module)
    with pytest.raises(Reached):
        job.main(argv)


def _launcher() -> ModuleType:
    return _load_module(ROLE / "files" / "fms_spark_main.py", "fms_spark_main")


@pytest.mark.parametrize(
    ("unit", "module", "args_file"),
    [
        ("fms-hourly-summary.service", "fms_jobs.batch.hourly_summary", "hourly-summary.args"),
        ("fms-archive.service", "fms_jobs.batch.archive", "archive.args"),
    ],
)
def test_batch_jobs_command_lines_parse(
    rendered: Path, monkeypatch: pytest.MonkeyPatch, unit: str, module: str, args_file: str
) -> None:
    out = _out(rendered, MASTER)
    argv = _exec_start(out / unit)
    assert _option(argv, "--master") == "spark://fms-test-spark-master-1:7077"
    assert _option(argv, "--deploy-mode") == "client"
    assert _option(argv, "--py-files").endswith("/opt/fms-jobs/lib/fms_jobs.zip")
    launcher = next(i for i, a in enumerate(argv) if a.endswith("/fms_spark_main.py"))
    assert argv[launcher + 1 :] == [module, f"@/etc/fms/{args_file}"]
    if module.endswith("archive"):
        assert "hadoop-aws-3.3.4.jar" in _option(argv, "--jars")
    args = _launcher().expand([f"@{out / args_file}"])
    nn = "hdfs://fms-test-hdfs-namenode-1:8020"
    if module.endswith("hourly_summary"):
        assert _option(args, "--processed") == f"{nn}/fms/processed"
        assert _option(args, "--checkpoint") == f"{nn}/fms/checkpoints/stream"
        assert _option(args, "--output") == f"{nn}/fms/curated/hourly_summary"
        assert _option(args, "--textfile-dir") == "/var/lib/node_exporter/textfile_collector"
        svc = _unit(out / unit)["Service"]
        assert svc["SupplementaryGroups"] == ["fms-metrics"]
    else:
        assert f"processed={nn}/fms/processed=s3a://fms-lab-processed/processed" in args
        assert f"hourly_summary={nn}/fms/curated/hourly_summary=s3a://fms-lab-curated/hourly_summary" in args
        assert _option(args, "--runs") == f"{nn}/fms/curated/hourly_summary/_runs"
        assert "--s3-path-style" in args
    _job_main(module, args, monkeypatch)


def test_job_runner_runs_the_units_command_with_extra_arguments(rendered: Path, tmp_path: Path) -> None:
    """fms-spark-job NAME ARGS: the unit's spark-submit line as the spark user, ARGS appended."""
    runner = _out(rendered, MASTER) / "fms-spark-job"
    assert subprocess.run(["bash", "-n", str(runner)], check=False).returncode == 0
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "runuser").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n', encoding="utf-8")
    (shim / "runuser").chmod(0o755)
    env = {**os.environ, "PATH": f"{shim}:{os.environ['PATH']}"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = ["bash", str(runner), *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)

    usage = run()
    assert usage.returncode == 64 and "hourly_summary|archive|audit" in usage.stderr
    unknown = run("stream")
    assert unknown.returncode == 64 and "unknown job 'stream'" in unknown.stderr
    hourly = run("hourly_summary", "--hour", "2026-12-01T05", "--assume-closed")
    assert hourly.returncode == 0, hourly.stderr
    argv = hourly.stdout.splitlines()
    # the unit's User=, Group= and SupplementaryGroups= (it writes the node_exporter textfile)
    assert argv[:7] == ["-u", "spark", "-g", "spark", "-G", "fms-metrics", "--"]
    assert "PYSPARK_PYTHON=/usr/bin/python3" in argv
    unit_argv = _exec_start(_out(rendered, MASTER) / "fms-hourly-summary.service")
    start = argv.index(unit_argv[0])
    assert argv[start:] == [*unit_argv, "--hour", "2026-12-01T05", "--assume-closed"]
    audit = run("audit").stdout.splitlines()
    assert audit[:5] == ["-u", "spark", "-g", "spark", "--"]
    launcher = next(i for i, a in enumerate(audit) if a.endswith("/fms_spark_main.py"))
    assert audit[launcher + 1 :] == ["fms_jobs.batch.audit", "--config", "/etc/fms/stream.yml"]
    assert _option(audit, "--name") == "fms-audit"


def test_launcher_runs_a_module_with_an_args_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = tmp_path / "job.args"
    args.write_text("# comment\n--alpha\n\nvalue with spaces\n  --beta  \n", encoding="utf-8")
    launcher = _launcher()
    assert launcher.expand(["--x", f"@{args}", "y"]) == ["--x", "--alpha", "value with spaces", "--beta", "y"]
    pkg = tmp_path / "probe_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text(
        "import json, sys\nif __name__ == '__main__':\n    print(json.dumps(sys.argv[1:]))\n    sys.exit(3)\n"
    )
    result = subprocess.run(
        [sys.executable, str(ROLE / "files" / "fms_spark_main.py"), "probe_pkg", f"@{args}", "--z"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(tmp_path)),
    )
    assert result.returncode == 3, result.stderr
    assert json.loads(result.stdout) == ["--alpha", "value with spaces", "--beta", "--z"]


def test_archive_disabled_without_lake_buckets(tmp_path: Path) -> None:
    result = _render(tmp_path, _layout(collectors=1))
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    out = _out(tmp_path, MASTER)
    assert _facts(tmp_path, MASTER)["timers"] == ["fms-hourly-summary"]
    assert not (out / "fms-archive.service").exists()


# --------------------------------------------------------------------------- control-machine build


def _build(source: Path, out: Path) -> dict[str, Any]:
    defaults = _defaults()
    cmd = [
        sys.executable,
        str(ROLE / "files" / "build_fms_jobs.py"),
        "--source",
        str(source),
        "--out",
        str(out),
    ]
    cmd += [f"--constraint={c}" for c in defaults["fms_pipeline_build_constraints"]]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if result.returncode != 0 and re.search(
        r"(?i)connection|resolve|network|index|No matching distribution", result.stdout + result.stderr
    ):
        pytest.skip(f"the build backend cannot be fetched here: {result.stderr[-400:]}")
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, Any], ...]]:
    tmp = tmp_path_factory.mktemp("pipeline-build")
    first = _build(REPO / "jobs", tmp / "a")
    again = _build(REPO / "jobs", tmp / "a")
    elsewhere = _build(REPO / "jobs", tmp / "b")  # another control machine / a fresh checkout
    yield first, again, elsewhere


def test_build_is_idempotent_and_reproducible(builds: tuple[dict[str, Any], ...]) -> None:
    first, again, elsewhere = builds
    assert first["changed"] is True
    assert again["changed"] is False and again["wheel"] == first["wheel"]
    assert elsewhere["changed"] is True
    assert elsewhere["wheel_sha256"] == first["wheel_sha256"]  # byte-identical wheel
    assert elsewhere["zip_sha256"] == first["zip_sha256"]


def test_build_outputs(builds: tuple[dict[str, Any], ...]) -> None:
    first = builds[0]
    with zipfile.ZipFile(first["wheel"]) as whl:
        names = set(whl.namelist())
        assert "fms_jobs/quality/quality_rules.yaml" in names
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "fms-collector = fms_jobs.collector.cli:main" in whl.read(entry_points).decode()
    with zipfile.ZipFile(first["zip"]) as z:
        names = z.namelist()
        assert names == sorted(names) and all(n.startswith("fms_jobs/") for n in names)
        assert "fms_jobs/streaming/__main__.py" in names and "fms_jobs/quality/quality_rules.yaml" in names
        # the rules moved from fms_jobs/config/ to fms_jobs/quality/: no stale copy ships beside them
        assert not any(n.startswith("fms_jobs/config/") for n in names), names
    # the executors' zip imports (zipimport), as --py-files puts it on sys.path
    result = subprocess.run(
        [sys.executable, "-c", "import fms_jobs.streaming.config as c; print(c.__file__)"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=first["zip"]),
        cwd="/",
    )
    assert result.returncode == 0 and first["zip"] in result.stdout, result.stderr


def test_build_ignores_caches(tmp_path: Path) -> None:
    build = _load_module(ROLE / "files" / "build_fms_jobs.py", "build_fms_jobs")
    src = tmp_path / "jobs"
    shutil.copytree(
        REPO / "jobs" / "fms_jobs", src / "fms_jobs", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPO / "jobs" / "pyproject.toml", src / "pyproject.toml")
    before = build.source_digest(src, [])
    (src / "fms_jobs" / "__pycache__").mkdir(exist_ok=True)
    (src / "fms_jobs" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    assert build.source_digest(src, []) == before
    (src / "fms_jobs" / "collector" / "cli.py").write_text("# changed\n", encoding="utf-8")
    assert build.source_digest(src, []) != before


# --------------------------------------------------------------------------- preflight


def _pipeline(
    inventory: Path, secrets: Path, *extra: str, playbook: Path = PLAYBOOK
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(inventory),
            str(playbook),
            "-e",
            f"fms_secrets_dir={secrets}",
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=ansible_env(),
        timeout=600,
    )


def _plays(output: str) -> list[str]:
    return re.findall(r"^PLAY \[(.*?)\] \*+", output, flags=re.M)


def test_preflight_passes_a_good_inventory_then_connects(tmp_path: Path) -> None:
    result = _pipeline(_write_inventory(tmp_path, _layout()), tmp_path / "secrets")
    output = result.stdout + result.stderr
    plays = _plays(output)
    assert plays[0].startswith(PREFLIGHT_PLAY) and len(plays) >= 2, plays
    preflight = output.split(f"PLAY [{plays[1]}", 1)[0]
    assert "FAILED!" not in preflight and "UNREACHABLE" not in preflight, preflight[-3000:]
    assert "UNREACHABLE" in output  # the first connection comes after the checks (TEST-NET hosts)


@pytest.mark.parametrize(
    ("layout", "extra", "message"),
    [
        (_layout(spark_master=False), [], "exactly one Spark master for the streaming job"),
        (_layout(), ["-e", "fms_pipeline_collector_devices=0"], "invalid collector settings"),
        (_layout(), ["-e", "fms_pipeline_collector_devices=20000"], "the quality rules' known devices"),
        (
            _layout(),
            ["-e", "fms_pipeline_collector_source=http"],
            "HTTP mode needs fms_pipeline_collector_http_base_url",
        ),
        (_layout(), ["-e", "fms_pipeline_stream_driver_memory=lots"], "invalid Spark job settings"),
        (
            _layout(),
            ["-e", "fms_pipeline_collector_kafka_user=nobody"],
            "must be among kafka_scram_usernames",
        ),
        (_layout(), ["-e", '{"fms_pipeline_archive_enabled": true}'], "the archive job is enabled but"),
        (_layout(), ["-e", "fms_site_role=passive"], "fms_site_role must be one of: active, standby"),
    ],
    ids=[
        "no-spark-master",
        "no-devices",
        "too-many-devices",
        "http-without-url",
        "memory",
        "kafka-user",
        "archive",
        "site-role",
    ],
)
def test_preflight_rejects_bad_input(
    tmp_path: Path, layout: dict[str, Any], extra: list[str], message: str
) -> None:
    result = _pipeline(_write_inventory(tmp_path, layout), tmp_path / "secrets", *extra)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert message in " ".join(output.split()), output[-4000:]
    plays = _plays(output)
    assert plays == [plays[0]] and plays[0].startswith(PREFLIGHT_PLAY), plays
    assert "UNREACHABLE" not in output, "a host was contacted"


def test_site_deploys_the_pipeline_last_and_checks_its_variables_first(tmp_path: Path) -> None:
    """site.yml imports pipeline.yml as its last play; a bad pipeline variable stops its preflight."""
    site = ANSIBLE_DIR / "site.yml"
    plays = yaml.safe_load(site.read_text(encoding="utf-8"))
    assert plays[-1].get("ansible.builtin.import_playbook") == "pipeline.yml", plays[-1]
    inventory = _write_inventory(tmp_path, _layout())
    bad = ["-e", "fms_pipeline_collector_devices=0"]
    result = _pipeline(inventory, tmp_path / "secrets", *bad, playbook=site)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "invalid collector settings" in " ".join(output.split()), output[-4000:]
    ran = _plays(output)  # the preflight plays only (the MirrorMaker 2 ones touch no host either)
    assert ran and all(play.startswith("Preflight") for play in ran), ran
    assert "UNREACHABLE" not in output, "a host was contacted"
