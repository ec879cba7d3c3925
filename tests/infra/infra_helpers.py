"""Helpers shared by the testinfra modules."""

from __future__ import annotations

import shlex


def run(host, command: str, timeout: int = 300):
    """Run a shell command on a host under a timeout; returns testinfra's CommandResult."""
    return host.run(f"timeout {timeout} bash -c {shlex.quote(command)}")


def listening(host, port: int) -> bool:
    """True when something listens on the TCP port, on any address (0.0.0.0, ::, or the node's own)."""
    return any(s.startswith("tcp://") and s.endswith(f":{port}") for s in host.socket.get_listening_sockets())


_HTTP = r"""
import base64, os, ssl, sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[1])
user, password = os.environ.get("FMS_U", ""), os.environ.get("FMS_P", "")
cafile = os.environ.get("FMS_CA") or None
if user:
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
try:
    with urllib.request.urlopen(req, timeout=10, context=ssl.create_default_context(cafile=cafile)) as resp:
        body, status = resp.read(), resp.status
except urllib.error.HTTPError as err:
    body, status = err.read(), err.code
except urllib.error.URLError as err:
    if not isinstance(err.reason, ssl.SSLError):
        raise
    body, status = f"TLS: {err.reason}".encode(), 0
sys.stdout.write(str(status) + "\n" + body.decode("utf-8", "replace"))
"""

# The site CA on every node (common role; group_vars/all: fms_ca_cert_path).
SITE_CA = "/etc/fms/pki/ca.crt"


def http(host, url: str, user: str = "", password: str = "", cafile: str = "") -> tuple[int, str]:
    """GET `url` from the node itself; returns (status, body). An https URL is verified against
    `cafile` only when given (else the node's trust store); a failed TLS handshake is status 0."""
    env = f"FMS_U={shlex.quote(user)} FMS_P={shlex.quote(password)} FMS_CA={shlex.quote(cafile)}"
    result = host.run(f"{env} timeout 30 python3 -c {shlex.quote(_HTTP)} {shlex.quote(url)}")
    assert result.rc == 0, result.stderr
    status, _, body = result.stdout.partition("\n")
    return int(status), body
