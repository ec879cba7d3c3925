"""Shared fixtures of the monitoring tests (``make test-monitoring``).

They need the CLIs of Debian's ``prometheus`` and ``prometheus-alertmanager``
packages (installed by ``make bootstrap``): ``promtool`` and ``amtool``. Set
FMS_PROMTOOL / FMS_AMTOOL to use other builds (e.g. the 3.x promtool of the lab
mirror). Role templates are rendered with Ansible itself
(render/render.yml against the sample inventory render/inventory.yml), with a
test site CA in place of the one site.yml's preflight creates (site_secrets).
"""

from __future__ import annotations

import datetime
import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ROLES = REPO / "roles"
RULES_DIR = ROLES / "prometheus" / "files" / "rules"
RULE_TESTS_DIR = RULES_DIR / "tests"
DASHBOARDS_DIR = ROLES / "grafana" / "files" / "dashboards"
JMX_TEMPLATES = ROLES / "jmx_exporter" / "templates"
CATALOGUE = HERE / "metric_catalogue.yml"
RENDER_PLAYBOOK = HERE / "render" / "render.yml"
RENDER_INVENTORY = HERE / "render" / "inventory.yml"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")


def _tool(env_name: str, name: str) -> str:
    path = os.environ.get(env_name) or shutil.which(name)
    if not path:
        pytest.fail(
            f"{name} not found: install Debian's prometheus / prometheus-alertmanager packages "
            f"(make bootstrap) or point {env_name} at a binary"
        )
    return path


@pytest.fixture(scope="session")
def promtool() -> str:
    return _tool("FMS_PROMTOOL", "promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    return _tool("FMS_AMTOOL", "amtool")


def run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300):
    """Run a command, bounded in time, capturing its output."""
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def require_passlib() -> None:
    """The web configs store bcrypt hashes made by Ansible's password_hash filter (passlib)."""
    try:
        import passlib  # noqa: F401
    except ImportError:
        pytest.fail(
            "passlib is not installed in the Python environment: Ansible's password_hash('bcrypt') needs it "
            "to render the Prometheus/Alertmanager web configs (add passlib to requirements.in)"
        )


@functools.cache
def test_ca() -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM) of a site CA for this test session, shaped like common/pki_ca.yml's
    (CA:TRUE, pathlen 0, keyCertSign) but an EC key: quick to make, and render.yml signs with it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "FMS test internal CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "FMS Platform"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def _install_test_ca(secrets_dir: Path) -> None:
    """Put the session's CA where site.yml's preflight (common/site_secrets) creates the site CA."""
    pki = secrets_dir / "pki"
    (pki / "hosts").mkdir(parents=True, exist_ok=True)
    key_pem, cert_pem = test_ca()
    if not (pki / "ca.crt").exists():
        (pki / "ca.key").write_bytes(key_pem)
        (pki / "ca.key").chmod(0o600)
        (pki / "ca.crt").write_bytes(cert_pem)


def render(
    out_dir: Path, *extra: str, tags: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run render/render.yml into `out_dir` (also used for the preflight failure tests)."""
    _install_test_ca(out_dir / "secrets")
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_CONFIG"}
    env.update(
        FMS_RENDER_DIR=str(out_dir),
        ANSIBLE_ROLES_PATH=str(ROLES),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_STDOUT_CALLBACK="default",
        # Without the project's ansible.cfg, still the platform contract (fms_platform) the
        # role defaults take their ports from.
        ANSIBLE_VARS_PLUGINS=str(REPO / "ansible" / "plugins" / "vars"),
        ANSIBLE_VARS_ENABLED="host_group_vars,fms_platform",
    )
    cmd = [str(ANSIBLE_PLAYBOOK), "-i", str(RENDER_INVENTORY), str(RENDER_PLAYBOOK), *extra]
    if tags:
        cmd += ["--tags", tags]
    return run(cmd, cwd=REPO, env=env, timeout=timeout)


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All monitoring templates rendered with the sample inventory (see render/render.yml)."""
    require_passlib()
    out = tmp_path_factory.mktemp("rendered")
    result = render(out)
    assert result.returncode == 0, f"rendering failed:\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    return out


def load_yaml(path: Path):
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.rules.yml"))


def rule_test_files() -> list[Path]:
    return sorted(RULE_TESTS_DIR.glob("*.yml"))


def all_rules() -> list[dict]:
    """Every rule of the shipped rule files, each with its file name under `_file`."""
    rules = []
    for path in rule_files():
        for group in load_yaml(path)["groups"]:
            for rule in group["rules"]:
                rules.append({**rule, "_file": path.name, "_group": group["name"]})
    return rules
