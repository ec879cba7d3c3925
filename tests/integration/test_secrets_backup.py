"""ansible/secrets_backup.yml and secrets_restore.yml against S3 in the AWS emulator (moto, loopback).

The bucket is made as terraform/envs (the standby stack) makes it: in the standby's region,
versioned, SSE-KMS with a customer key, public access blocked. A generated site secrets
directory (a PEM key, passwords, a hidden file, modes 0600/0640/0644, directories 0700) goes
up vault-encrypted, comes back on an "empty control machine" byte for byte with its modes, and
what S3 holds contains none of its plaintext. A restore refuses a non-empty directory; a backup
without a vault password, or a restore with the wrong one, stops with the reason.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import yaml
from fms_tools.fmsops.emulator import EMULATOR_ENV, Emulator, boto_credentials, free_port
from fms_tools.fmsops.platform_contract import load as load_platform

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BUCKET = "fms-test-000000000000-secrets-backup"
# The bucket's region: the standby stack's (Terraform makes it there; the playbooks read the same).
REGION = next(s.region for s in load_platform().stacks.values() if s.role == "standby")
SITE = "test-primary"  # fms_env test, fms_stack primary (the inventory below)
PASSWORD = "vault-pass-" + secrets.token_hex(8)
KEY_LABEL = " ".join(("PRIVATE", "KEY"))


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emu = Emulator(port=free_port(), log_path=tmp_path_factory.mktemp("moto") / "moto.log").start()
    yield emu
    emu.stop()


@pytest.fixture(scope="module")
def s3(emulator: Emulator):
    """The backup bucket as Terraform's s3_bucket module makes it (versioning, SSE-KMS, no public access)."""
    creds = boto_credentials()
    client = boto3.client("s3", region_name=REGION, endpoint_url=emulator.url, **creds)
    key = boto3.client("kms", region_name=REGION, endpoint_url=emulator.url, **creds).create_key()
    client.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    client.put_bucket_encryption(
        Bucket=BUCKET,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {
                        "SSEAlgorithm": "aws:kms",
                        "KMSMasterKeyID": key["KeyMetadata"]["Arn"],
                    }
                }
            ]
        },
    )
    client.put_public_access_block(
        Bucket=BUCKET,
        PublicAccessBlockConfiguration={
            k: True
            for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
        },
    )
    return client


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The control machine: a vault password file and an inventory of one (never contacted) host."""
    root = tmp_path_factory.mktemp("control")
    (root / "vault.pass").write_text(PASSWORD + "\n")
    (root / "vault.pass").chmod(0o600)
    (root / "wrong.pass").write_text("not-" + PASSWORD + "\n")
    inventory = {
        "all": {
            "children": {
                "kafka": {
                    "hosts": {
                        "fms-test-kafka-1": {
                            "ansible_host": "192.0.2.11",
                            "fms_env": "test",
                            "fms_stack": "primary",
                        }
                    }
                }
            }
        }
    }
    (root / "inventory.yml").write_text(yaml.safe_dump(inventory))
    return root


def make_secrets(directory: Path) -> dict[str, str]:
    """A site secrets directory like roles/common's: returns the plaintext that must not reach S3."""
    plain = {
        "password": secrets.token_urlsafe(24),
        # a PEM header built at run time: no key-shaped literal in the repository (secret scanners)
        "pem": "-----BEGIN " + KEY_LABEL + "-----",
        "key_body": secrets.token_hex(64),
    }
    files = {
        "kafka/scram-admin.password": (plain["password"], 0o600),
        "kafka/cluster.id": ("a" * 22, 0o644),
        "spark/auth.secret": (secrets.token_hex(16), 0o600),
        "pki/ca.key": (f"{plain['pem']}\n{plain['key_body']}\n-----END {KEY_LABEL}-----\n", 0o600),
        "pki/ca.crt": ("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", 0o644),
        "pki/hosts/fms-test-kafka-1.crt": ("host cert\n", 0o640),
        ".site": (SITE + "\n", 0o600),
    }
    for rel, (text, mode) in files.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(text)
        path.chmod(mode)
    for sub in ("kafka", "spark", "pki", "pki/hosts"):
        (directory / sub).chmod(0o700)
    directory.chmod(0o700)
    return plain


def snapshot(directory: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every entry under `directory`: mode and, for files, content."""
    found = {}
    for path in sorted(directory.rglob("*")):
        mode = stat.S_IMODE(path.lstat().st_mode)
        found[str(path.relative_to(directory))] = (mode, path.read_bytes() if path.is_file() else None)
    return found


def playbook(
    name: str, workdir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_VAULT", "AWS_"))},
        **EMULATOR_ENV,
        "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        **(env or {}),
    }
    return subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            str(REPO / "ansible" / name),
            "-e",
            f"fms_secrets_backup_bucket={BUCKET}",
            *args,
        ],
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def backup(
    workdir: Path, emulator: Emulator, secrets_dir: Path | str, *args: str
) -> subprocess.CompletedProcess[str]:
    """Backup as an operator runs it against the stack's inventory, the endpoint passed as a variable."""
    return playbook(
        "secrets_backup.yml",
        workdir,
        "-i",
        str(workdir / "inventory.yml"),
        "-e",
        f"fms_secrets_dir={secrets_dir}",
        "-e",
        f"fms_secrets_backup_endpoint_url={emulator.url}",
        *args,
    )


def restore(
    workdir: Path, emulator: Emulator, secrets_dir: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """Restore on a new control machine whose stack answers no hosts: the site named by
    fms_env/fms_stack, the endpoint from AWS_URL (as the lab's converge environment sets it)."""
    return playbook(
        "secrets_restore.yml",
        workdir,
        "-e",
        "fms_env=test",
        "-e",
        "fms_stack=primary",
        "-e",
        f"fms_secrets_dir={secrets_dir}",
        *args,
        env={"AWS_URL": emulator.url},
    )


def site_objects(s3) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{SITE}/").get("Contents", []))


def output(result: subprocess.CompletedProcess[str]) -> str:
    return " ".join((result.stdout + result.stderr).split())


def test_backup_is_encrypted_and_restores_byte_for_byte(s3, emulator: Emulator, workdir: Path) -> None:
    source = workdir / "secrets" / SITE
    plain = make_secrets(source)
    before = snapshot(source)
    objects_before = site_objects(s3)

    result = backup(workdir, emulator, source, "--vault-password-file", str(workdir / "vault.pass"))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    new = sorted(set(site_objects(s3)) - set(objects_before))
    assert len(new) == 1 and new[0].startswith(f"{SITE}/secrets-") and new[0].endswith(".tar.gz.vault"), new

    stored = s3.get_object(Bucket=BUCKET, Key=new[0])
    body = stored["Body"].read()
    assert stored["ServerSideEncryption"] == "aws:kms"  # the bucket's default key, not the module's AES256
    assert body.startswith(b"$ANSIBLE_VAULT;1.1;AES256\n"), body[:80]
    for text in plain.values():
        assert text.encode() not in body
    assert b"BEGIN" not in body and b"\x1f\x8b" not in body  # no PEM, no gzip: nothing in the clear

    shutil.rmtree(workdir / "secrets")  # the primary's control machine is gone
    target = workdir / "new-control-machine" / "secrets" / SITE
    result = restore(workdir, emulator, target, "--vault-password-file", str(workdir / "vault.pass"))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert new[0] in output(result)
    assert snapshot(target) == before
    assert stat.S_IMODE(target.stat().st_mode) == 0o700


def test_restore_takes_the_newest_backup_unless_one_is_named(s3, emulator: Emulator, workdir: Path) -> None:
    source = workdir / "twice"
    make_secrets(source)
    vault = ("--vault-password-file", str(workdir / "vault.pass"))
    names = []
    for generation in ("first", "second"):
        (source / "kafka" / "cluster.id").write_text(generation)
        before = set(site_objects(s3))
        # A trailing slash names the same directory (the archive keeps its name for restore to strip).
        assert backup(workdir, emulator, f"{source}/", *vault).returncode == 0
        names += sorted(set(site_objects(s3)) - before)
    assert len(names) == 2 and names == sorted(names)

    newest = workdir / "restored-newest"
    assert restore(workdir, emulator, newest, *vault).returncode == 0
    assert (newest / "kafka" / "cluster.id").read_text() == "second"
    named = workdir / "restored-named"
    assert (
        restore(workdir, emulator, named, *vault, "-e", f"fms_secrets_backup_key={names[0]}").returncode == 0
    )
    assert (named / "kafka" / "cluster.id").read_text() == "first"


def test_restore_refuses_a_non_empty_secrets_directory(s3, emulator: Emulator, workdir: Path) -> None:
    target = workdir / "in-use"
    target.mkdir()
    (target / "ca.key").write_text("the CA the hosts trust now")
    result = restore(workdir, emulator, target, "--vault-password-file", str(workdir / "vault.pass"))
    assert result.returncode != 0
    assert "is not empty (1 entries): a restore only fills a missing or empty secrets directory" in output(
        result
    )
    assert [p.name for p in target.iterdir()] == ["ca.key"]
    assert (target / "ca.key").read_text() == "the CA the hosts trust now"


def test_backup_without_a_vault_password_uploads_nothing(s3, emulator: Emulator, workdir: Path) -> None:
    source = workdir / "no-password"
    make_secrets(source)
    before = site_objects(s3)
    result = backup(workdir, emulator, source)
    assert result.returncode != 0
    assert (
        "no vault password: run ansible-playbook with --vault-password-file FILE, --ask-vault-pass"
        in output(result)
    )
    assert site_objects(s3) == before
    assert not list(Path("/tmp").glob("ansible.*fms-secrets-backup")), "the plaintext archive was left behind"


def test_restore_with_the_wrong_vault_password_writes_nothing(s3, emulator: Emulator, workdir: Path) -> None:
    source = workdir / "wrong-password"
    make_secrets(source)
    assert (
        backup(workdir, emulator, source, "--vault-password-file", str(workdir / "vault.pass")).returncode
        == 0
    )
    target = workdir / "wrong-password-restore"
    result = restore(workdir, emulator, target, "--vault-password-file", str(workdir / "wrong.pass"))
    assert result.returncode != 0
    assert "Decryption failed" in output(result)
    assert not target.exists() or not any(target.iterdir())


def test_backup_needs_the_bucket_and_one_stack(workdir: Path, emulator: Emulator, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), str(REPO / "ansible" / "secrets_backup.yml")],
        cwd=workdir,
        env={**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible" / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode != 0
    assert "No backup bucket: pass -e fms_secrets_backup_bucket=" in output(result)
    two_sites = tmp_path / "two.yml"
    two_sites.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "hosts": {
                        "a": {"ansible_host": "192.0.2.1", "fms_env": "test", "fms_stack": "primary"},
                        "b": {"ansible_host": "192.0.2.2", "fms_env": "test", "fms_stack": "dr"},
                    }
                }
            }
        )
    )
    result = playbook(
        "secrets_backup.yml",
        workdir,
        "-i",
        str(two_sites),
        "--vault-password-file",
        str(workdir / "vault.pass"),
    )
    assert result.returncode != 0
    assert "The inventory holds several sites (test-primary, test-dr)" in output(result)
