"""Static checks of the Ansible code: yamllint, ansible-lint (production profile),
syntax checks, the checksum parser, and the preflight guarantee that bad operator
input (wrong inventory, missing vault secret, invalid variable) stops site.yml
before any host is contacted or changed.

The preflight runs use inventories of unreachable TEST-NET-1 hosts (192.0.2.0/24):
if a check ever let bad input through, the next play would fail UNREACHABLE
instead of touching anything, and the assertions below would catch it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible_support import BIN, ansible_env

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
ROLES_DIR = REPO / "roles"
# Roles written with this file's suite; other roles found under roles/ are linted too.
CORE_ROLES = ("common", "java", "kafka", "hdfs", "spark")
# yamllint settings compatible with ansible-lint's own YAML rules (used when the
# repository has no .yamllint of its own).
YAMLLINT_CONFIG = """
extends: default
rules:
  line-length: {max: 160}
  truthy: {allowed-values: ["true", "false"], check-keys: false}
  comments: {min-spaces-from-content: 1}
  comments-indentation: false
  braces: {max-spaces-inside: 1}
  octal-values: {forbid-implicit-octal: true, forbid-explicit-octal: true}
  document-start: {present: true}
"""
PREFLIGHT_PLAY = "Preflight - validate inventory, variables and secrets"
# The first play that connects to the hosts: it reads the site role each recorded, changes nothing.
SITE_ROLE_PLAY = "Preflight - the site role each host recorded"


def _all_roles() -> list[str]:
    return sorted(p.name for p in ROLES_DIR.iterdir() if (p / "tasks").is_dir())


# --------------------------------------------------------------------------- lint


@pytest.mark.parametrize("target", ["ansible", *(f"roles/{r}" for r in _all_roles())])
def test_yamllint(target: str, tmp_path: Path) -> None:
    config = REPO / ".yamllint"
    if not config.exists():
        config = tmp_path / "yamllint.yml"
        config.write_text(YAMLLINT_CONFIG, encoding="utf-8")
    result = subprocess.run(
        [str(BIN / "yamllint"), "-s", "-c", str(config), target],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# Every playbook an operator runs (ansible/*.yml; the kafka_mirror_* plays are only imported by them).
IMPORTED_ONLY = {"kafka_mirror_group.yml", "kafka_mirror_source.yml"}
PLAYBOOKS = sorted(p.name for p in ANSIBLE_DIR.glob("*.yml") if p.name not in IMPORTED_ONLY)


def _run_ansible_lint(paths: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """ansible-lint, production profile, codeclimate JSON on stdout."""
    lint = [
        str(BIN / "ansible-lint"),
        "--offline",
        "--profile",
        "production",
        "--nocolor",
        "-f",
        "codeclimate",
    ]
    return subprocess.run([*lint, *paths], cwd=cwd, capture_output=True, text=True, env=ansible_env())


@pytest.fixture(scope="module")
def lint_findings() -> dict[str, list[str]]:
    """ansible-lint (production profile) once over every role and playbook; findings per file.

    One run instead of one per role: the linter's start-up (collections, schemas) dominates.
    """
    paths = [f"roles/{r}" for r in _all_roles()] + [f"ansible/{p}" for p in PLAYBOOKS]
    result = _run_ansible_lint(paths, REPO)
    try:
        issues = json.loads(result.stdout or "[]")
    except ValueError:
        pytest.fail(
            f"ansible-lint did not report (rc={result.returncode}):\n"
            f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
    findings: dict[str, list[str]] = {}
    for issue in issues:
        where = issue["location"]["path"]
        line = issue["location"].get("lines", {}).get("begin", "?")
        findings.setdefault(where, []).append(
            f"{where}:{line} {issue.get('check_name')}: {issue.get('description')}"
        )
    if result.returncode != 0 and not findings:
        pytest.fail(
            f"ansible-lint failed without findings (rc={result.returncode}):\n{result.stderr[-3000:]}"
        )
    return findings


def _findings_under(findings: dict[str, list[str]], prefix: str) -> list[str]:
    return [
        msg
        for path, msgs in sorted(findings.items())
        if path == prefix or path.startswith(prefix + "/")
        for msg in msgs
    ]


@pytest.mark.parametrize("role", _all_roles())
def test_ansible_lint_role(role: str, lint_findings: dict[str, list[str]]) -> None:
    found = _findings_under(lint_findings, f"roles/{role}")
    assert not found, "\n".join(found)


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_ansible_lint_playbook(playbook: str, lint_findings: dict[str, list[str]]) -> None:
    assert (ANSIBLE_DIR / playbook).exists(), f"ansible/{playbook} is missing"
    found = _findings_under(lint_findings, f"ansible/{playbook}")
    assert not found, "\n".join(found)


def test_ansible_lint_reports_a_known_violation(tmp_path: Path) -> None:
    """The linter run above can fail: a task without a name is a production-profile finding."""
    role = tmp_path / "roles" / "bad" / "tasks"
    role.mkdir(parents=True)
    (role / "main.yml").write_text("---\n- ansible.builtin.command: /bin/true\n", encoding="utf-8")
    result = _run_ansible_lint(["roles/bad"], tmp_path)
    names = {i["check_name"] for i in json.loads(result.stdout or "[]")}
    assert result.returncode != 0 and any(n.startswith("name") for n in names), names


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_syntax_check(playbook: str, tmp_path: Path) -> None:
    inventory = _write_inventory(tmp_path, _layout())
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "--syntax-check", "-i", str(inventory), str(ANSIBLE_DIR / playbook)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=ansible_env(),
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_role_variable_is_described() -> None:
    """Each core role's defaults are typed and described in meta/argument_specs.yml."""
    for role in CORE_ROLES:
        defaults = yaml.safe_load((ROLES_DIR / role / "defaults" / "main.yml").read_text()) or {}
        specs = yaml.safe_load((ROLES_DIR / role / "meta" / "argument_specs.yml").read_text())[
            "argument_specs"
        ]
        options: dict = {}
        for entry in specs.values():
            options.update(entry.get("options") or {})
        undocumented = sorted(set(defaults) - set(options))
        assert not undocumented, f"{role}: defaults without an argument spec: {undocumented}"
        for name, spec in options.items():
            assert spec.get("type"), f"{role}.{name} has no type"
            assert spec.get("description"), f"{role}.{name} has no description"


# --------------------------------------------------------------------------- checksum parser


def _checksum_filter():
    sys.path.insert(0, str(ROLES_DIR / "common" / "filter_plugins"))
    try:
        import fms_checksum
    finally:
        sys.path.pop(0)
    return fms_checksum.fms_checksum


@pytest.mark.parametrize(
    "content",
    [
        "{h}  kafka_2.13-4.1.2.tgz\n",
        "{h} *kafka_2.13-4.1.2.tgz\n",
        "{other}  something-else.tgz\n{h}  ./kafka_2.13-4.1.2.tgz\n",
        "SHA512 (kafka_2.13-4.1.2.tgz) = {h}\n",
        "kafka_2.13-4.1.2.tgz: {gpg}\n",
        "{h}\n",
    ],
    ids=["gnu", "gnu-binary", "gnu-multi", "bsd", "apache-gpg", "bare"],
)
def test_checksum_formats(content: str) -> None:
    digest = "0123456789abcdef" * 8
    gpg = " ".join(digest.upper()[i : i + 8] for i in range(0, 128, 8))
    gpg = gpg[:60] + "\n                 " + gpg[60:]
    text = content.format(h=digest, other="f" * 128, gpg=gpg)
    parse = _checksum_filter()
    assert parse(text, "https://mirror/kafka/4.1.2/kafka_2.13-4.1.2.tgz", "sha512") == digest


def test_checksum_rejects_wrong_file_and_length() -> None:
    from ansible.errors import AnsibleFilterError

    parse = _checksum_filter()
    with pytest.raises(AnsibleFilterError):
        parse("ab" * 64 + "  other.tgz\n", "kafka.tgz", "sha512")
    with pytest.raises(AnsibleFilterError):
        parse("ab" * 20, "x.jar", "sha512")


# --------------------------------------------------------------------------- preflight


def _layout(controllers: int = 3, brokers: int = 3) -> dict:
    def ip(n: int) -> str:
        return f"192.0.2.{n}"

    kafka = {f"fms-test-kafka-{i}": {"ansible_host": ip(10 + i)} for i in range(1, brokers + 1)}
    ctrl = {
        f"fms-test-kafka-{i}": ({"ansible_host": ip(10 + i)} if i > brokers else {})
        for i in range(1, controllers + 1)
    }
    return {
        "all": {
            "vars": {
                "ansible_user": "root",
                "ansible_ssh_common_args": "-o ConnectTimeout=3 -o BatchMode=yes",
                "fms_env": "test",
                # Site choices the monitoring roles require an operator to make.
                "alertmanager_allow_no_receivers": True,
                "grafana_enabled": False,
            },
            "children": {
                "kafka": {"hosts": kafka},
                "kafka_controller": {"hosts": ctrl},
                "hdfs_namenode": {"hosts": {"fms-test-hdfs_namenode-1": {"ansible_host": ip(31)}}},
                "hdfs_datanode": {
                    "hosts": {
                        "fms-test-hdfs_datanode-1": {"ansible_host": ip(32)},
                        "fms-test-hdfs_datanode-2": {"ansible_host": ip(33)},
                    }
                },
                "spark_master": {"hosts": {"fms-test-spark_master-1": {"ansible_host": ip(41)}}},
                "spark_worker": {"hosts": {"fms-test-spark_worker-1": {"ansible_host": ip(42)}}},
                "monitoring": {"hosts": {"fms-test-monitoring-1": {"ansible_host": ip(51)}}},
                "collector": {"hosts": {"fms-test-collector-1": {"ansible_host": ip(61)}}},
            },
        }
    }


def _write_inventory(directory: Path, layout: dict, name: str = "inventory.yml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(layout), encoding="utf-8")
    return path


def _site(inventory: Path, secrets: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(inventory),
            str(ANSIBLE_DIR / "site.yml"),
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


def _recap(output: str) -> dict[str, dict[str, int]]:
    recap = {}
    for line in output.split("PLAY RECAP", 1)[-1].splitlines():
        m = re.match(r"^(\S+)\s+:\s+(ok=\d+.*)$", line.strip())
        if m:
            recap[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return recap


def _plays(output: str) -> list[str]:
    return re.findall(r"^PLAY \[(.*?)\] \*+", output, flags=re.M)


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site secrets directory prepared by one good preflight run (shared by the failure cases)."""
    directory = tmp_path_factory.mktemp("preflight")
    inventory = _write_inventory(directory, _layout())
    result = _site(inventory, directory / "secrets", "--tags", "preflight")
    pytest.secrets_setup_output = result.stdout + result.stderr  # type: ignore[attr-defined]
    return directory / "secrets"


def _assert_stopped_in_preflight(result: subprocess.CompletedProcess[str], message: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert message in " ".join(output.split()), output[-4000:]
    plays = _plays(output)
    # site.yml's connection-less plays: the MirrorMaker 2 host mapping, then the preflight play.
    assert plays and plays[-1].startswith(PREFLIGHT_PLAY), plays
    assert all(play.startswith("Preflight - ") for play in plays), f"the run went past the preflight: {plays}"
    assert "UNREACHABLE" not in output, "a host was contacted"
    assert "Gathering Facts" not in output, "facts were gathered from a host"
    recap = _recap(output)
    assert recap, output[-2000:]
    for host, counts in recap.items():
        assert counts.get("changed", 0) == 0, f"{host} reported changes: {counts}"
        assert counts.get("unreachable", 0) == 0, f"{host} was contacted: {counts}"


def test_preflight_passes_a_good_inventory_then_connects(secrets_dir: Path, tmp_path: Path) -> None:
    """The checks accept a sound inventory; the first connection happens only after them, to read
    the site role each host recorded (it changes nothing; an unreachable host stops the run there)."""
    assert (secrets_dir / "pki" / "ca.crt").exists()
    assert (secrets_dir / "kafka" / "cluster.id").exists()
    inventory = _write_inventory(tmp_path, _layout())
    result = _site(inventory, secrets_dir)
    output = result.stdout + result.stderr
    plays = _plays(output)
    first = plays.index(next(p for p in plays if p.startswith(SITE_ROLE_PLAY)))
    assert first >= 1 and plays[first - 1].startswith(PREFLIGHT_PLAY), plays
    assert plays[first + 1].startswith("OS baseline"), plays
    preflight_part, site_role_part = output.split(f"PLAY [{plays[first]}", 1)
    assert "FAILED!" not in preflight_part and "UNREACHABLE" not in preflight_part, preflight_part[-3000:]
    assert "UNREACHABLE" in site_role_part.split("PLAY [OS baseline", 1)[0], site_role_part[-3000:]
    recap = _recap(output)
    for host, counts in recap.items():  # every host stopped at its first connection (the check), unchanged
        assert counts.get("unreachable", 0) == 1, f"{host}: {counts}"
        assert counts.get("changed", 0) == 0, f"{host}: {counts}"


def test_preflight_rejects_two_controllers(secrets_dir: Path, tmp_path: Path) -> None:
    inventory = _write_inventory(tmp_path, _layout(controllers=2))
    result = _site(inventory, secrets_dir)
    _assert_stopped_in_preflight(result, "the quorum must have an odd number of voters")


def test_preflight_rejects_production_with_one_controller(secrets_dir: Path, tmp_path: Path) -> None:
    layout = _layout(controllers=1)
    layout["all"]["vars"]["fms_env"] = "production"
    # the fixture's site (fms_env test, stack primary): its CA is reused, not re-issued under a new name
    result = _site(_write_inventory(tmp_path, layout), secrets_dir, "-e", "fms_site=test-primary")
    _assert_stopped_in_preflight(result, "production (fms_production) needs at least 3 controllers")


@pytest.mark.parametrize(("variable", "value"), [("fms_env", "prod"), ("fms_stack", "secondary")])
def test_preflight_rejects_an_environment_or_stack_not_in_the_contract(
    variable: str, value: str, tmp_path: Path
) -> None:
    """A misspelt name stops the run before its secrets directory (a new CA) is created."""
    layout = _layout()
    layout["all"]["vars"][variable] = value
    fresh = tmp_path / "secrets"
    result = _site(_write_inventory(tmp_path, layout), fresh)
    _assert_stopped_in_preflight(result, "must be named in platform.yml. Allowed environments")
    assert "production, staging, dev, test, lab" in result.stdout and "primary, dr" in result.stdout
    assert not fresh.exists(), "the secrets of a misnamed site were created"


def test_preflight_rejects_a_site_role_that_is_neither_active_nor_standby(tmp_path: Path) -> None:
    layout = _layout()
    layout["all"]["vars"]["fms_site_role"] = "passive"
    fresh = tmp_path / "secrets"
    result = _site(_write_inventory(tmp_path, layout), fresh)
    _assert_stopped_in_preflight(result, "fms_site_role must be one of: active, standby")
    assert not fresh.exists(), "the secrets of a misconfigured site were created"


def test_preflight_rejects_brokers_without_controllers(secrets_dir: Path, tmp_path: Path) -> None:
    layout = _layout()
    layout["all"]["children"]["kafka_controller"]["hosts"] = {}
    result = _site(_write_inventory(tmp_path, layout), secrets_dir)
    _assert_stopped_in_preflight(result, "Brokers need a controller quorum")


def test_preflight_rejects_missing_vault_secret(secrets_dir: Path, tmp_path: Path) -> None:
    inventory = _write_inventory(tmp_path, _layout())
    vault_vars = tmp_path / "vault.yml"
    vault_vars.write_text(
        yaml.safe_dump(
            {
                "fms_secrets_mode": "vault",
                "vault_kafka_scram_passwords": {
                    u: "x" * 24 for u in ("admin", "collector", "spark", "mirror")
                },
                "vault_kafka_keystore_password": "k" * 24,
            }
        ),
        encoding="utf-8",
    )
    result = _site(inventory, secrets_dir, "-e", f"@{vault_vars}")
    _assert_stopped_in_preflight(
        result, "ansible-vault variables are missing or empty: vault_spark_auth_secret"
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("kafka_heap_size=lots", "invalid Kafka settings"),
        ("kafka_default_replication_factor=three", "kafka_default_replication_factor"),
        ("common_timesync=ntpd", "common_timesync"),
        ("spark_worker_memory='2 GB'", "invalid Spark settings"),
        ("hdfs_replication=0", "invalid HDFS settings"),
    ],
    ids=["kafka-heap", "replication-type", "timesync-choice", "spark-memory", "hdfs-replication"],
)
def test_preflight_rejects_invalid_variable(
    secrets_dir: Path, tmp_path: Path, extra: str, message: str
) -> None:
    inventory = _write_inventory(tmp_path, _layout())
    result = _site(inventory, secrets_dir, "-e", extra)
    _assert_stopped_in_preflight(result, message)
