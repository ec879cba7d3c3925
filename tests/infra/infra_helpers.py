"""Helpers shared by the testinfra modules."""

from __future__ import annotations

import shlex


def run(host, command: str, timeout: int = 300):
    """Run a shell command on a host under a timeout; returns testinfra's CommandResult."""
    return host.run(f"timeout {timeout} bash -c {shlex.quote(command)}")


def listening(host, port: int) -> bool:
    """True when something listens on the TCP port, on any address (0.0.0.0, ::, or the node's own)."""
    return any(s.startswith("tcp://") and s.endswith(f":{port}") for s in host.socket.get_listening_sockets())
