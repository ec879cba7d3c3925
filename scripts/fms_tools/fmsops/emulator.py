"""Runs the AWS emulator (moto in server mode) on loopback.

The lab and the Terraform tests use the same emulator process; its URL is the
only thing that differs from real AWS.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import procs

LOOPBACK = "127.0.0.1"
# Credentials moto accepts; they never leave the machine. The one place they are
# written: the lab, the Terraform tests and the pipeline tests take them from here
# (as environment variables, or as boto3 keywords through boto_credentials()).
EMULATOR_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_EC2_METADATA_DISABLED": "true",
}


class EmulatorError(RuntimeError):
    pass


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class Emulator:
    """A moto_server process bound to loopback."""

    port: int
    log_path: Path
    pid: int | None = None
    # Written as soon as the process exists, so a run that dies while the emulator starts still
    # leaves a record of it: {"pid", "pid_start", "port"} (the lab adopts its own leftovers by it).
    pid_file: Path | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def client_env(self) -> dict[str, str]:
        """Environment for AWS SDKs and Terraform to talk to this emulator."""
        return {**EMULATOR_ENV, "AWS_ENDPOINT_URL": self.url}

    def start(self, timeout_s: float = 30.0) -> Emulator:
        if self.is_ready():
            return self
        try:
            import moto.server  # noqa: F401 - only checks that this interpreter has moto[server]
        except ImportError as exc:
            raise EmulatorError("moto[server] is not installed: run `make bootstrap`") from exc
        # Our launcher: moto's server plus fidelity fixes (see moto_server.py).
        command = [sys.executable, str(Path(__file__).with_name("moto_server.py"))]
        if not port_is_free(self.port):
            raise EmulatorError(
                f"port {self.port} on {LOOPBACK} is taken by another process; "
                "stop it or choose another port (FMS_EMULATOR_PORT)"
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            proc = subprocess.Popen(
                [*command, "-H", LOOPBACK, "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid = proc.pid
        if self.pid_file is not None:
            record = {"pid": proc.pid, "pid_start": procs.start_time(proc.pid), "port": self.port}
            self.pid_file.write_text(json.dumps(record))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise EmulatorError(f"moto_server exited with {proc.returncode}; see {self.log_path}")
            if self.is_ready():
                return self
            time.sleep(0.2)
        self.stop()
        raise EmulatorError(f"moto_server did not answer on {self.url} within {timeout_s:.0f}s")

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.pid is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                try:
                    reaped, _ = os.waitpid(self.pid, os.WNOHANG)
                except ChildProcessError:  # not our child (started by an earlier run)
                    reaped = 0
                if reaped == self.pid or not _alive(self.pid):
                    self._forget()
                    return
                time.sleep(0.1)
        self._forget()

    def _forget(self) -> None:
        self.pid = None
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)

    def reset(self) -> None:
        """Forget every emulated resource (moto's reset API)."""
        req = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


LAB_AMI_NAME = "debian-12-amd64-lab-20260101"


def register_lab_image(endpoint_url: str, region: str) -> str:
    """Register a 'Debian 12' image in the emulator so the stack's AMI lookup
    (owners=self, name debian-12-amd64-lab-*) resolves as it does on AWS.
    The lab boots its own Debian 12 rootfs for every instance of this image."""
    import boto3  # deferred: the CLI's --help must not need the AWS SDK

    ec2 = boto3.client("ec2", region_name=region, endpoint_url=endpoint_url, **boto_credentials())
    found = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [LAB_AMI_NAME]}])[
        "Images"
    ]
    if found:
        return str(found[0]["ImageId"])
    image = ec2.register_image(
        Name=LAB_AMI_NAME,
        Description="Debian 12 (bookworm) amd64 — FMS lab image, booted as a systemd-nspawn container",
        Architecture="x86_64",
        RootDeviceName="/dev/xvda",
        VirtualizationType="hvm",
    )
    return str(image["ImageId"])


def boto_credentials() -> dict[str, str]:
    """EMULATOR_ENV's credentials as boto3.client() keywords."""
    return {
        "aws_access_key_id": EMULATOR_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": EMULATOR_ENV["AWS_SECRET_ACCESS_KEY"],
        "aws_session_token": EMULATOR_ENV["AWS_SESSION_TOKEN"],
    }
