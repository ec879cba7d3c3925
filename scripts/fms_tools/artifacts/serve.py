"""A small threaded static HTTP server for the mirror directory."""

from __future__ import annotations

import errno
import functools
import socket
import sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class MirrorHandler(SimpleHTTPRequestHandler):
    """Static files only; archives get a binary content type; quiet unless errors."""

    extensions_map = {  # noqa: RUF012 - SimpleHTTPRequestHandler API
        **SimpleHTTPRequestHandler.extensions_map,
        ".tgz": "application/gzip",
        ".gz": "application/gzip",
        ".jar": "application/java-archive",
        ".pom": "application/xml",
        ".sha1": "text/plain",
        ".sha256": "text/plain",
        ".sha512": "text/plain",
    }

    def log_message(self, format: str, *args: object) -> None:  # stdlib signature
        sys.stderr.write(f"[mirror] {self.address_string()} {format % args}\n")


class MirrorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, bind: str, port: int, root: Path) -> None:
        self.address_family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        handler = functools.partial(MirrorHandler, directory=str(root))
        super().__init__((bind, port), handler)


def serve(root: Path, bind: str, port: int) -> int:
    """Serve `root` until interrupted. Returns a process exit code."""
    if not root.is_dir():
        print(
            f"error: mirror directory {root} does not exist; run `fms-artifacts build` first", file=sys.stderr
        )
        return 2
    try:
        server = MirrorServer(bind, port, root)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(
                f"error: port {port} on {bind} is already in use; stop the other server or pick --port",
                file=sys.stderr,
            )
        elif exc.errno == errno.EADDRNOTAVAIL:
            print(f"error: address {bind} is not configured on this machine", file=sys.stderr)
        else:
            print(f"error: cannot listen on {bind}:{port}: {exc}", file=sys.stderr)
        return 2
    host, actual_port = server.server_address[:2]
    print(f"serving {root} on http://{host}:{actual_port}/ (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
