"""Tiny network endpoints for the firewall test, run inside network namespaces (`ip netns exec`).

  netprobe.py serve --tcp PORT... --udp PORT...   echo one message per TCP connection / UDP datagram;
                                                   prints "ready" once every socket listens
  netprobe.py tcp HOST PORT [--source IP]          connect, send, read the echo
  netprobe.py udp HOST PORT                        send a datagram, wait for the echo
  netprobe.py icmp HOST                            one ICMP echo request (raw socket, root)

A probe prints one word and exits 0: "ok" (the echo came back), "timeout" (nothing came back:
a firewall dropped it) or "refused" (a RST: nothing listens). The timeout is --timeout (s).
Why Python and not nc/ping: the lab machine's packages do not include them; the venv does Python.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import struct
import sys
import threading
import time


def _serve_tcp(sock: socket.socket) -> None:
    while True:
        conn, _ = sock.accept()
        with conn:
            conn.settimeout(5)
            with contextlib.suppress(OSError):
                conn.sendall(conn.recv(1024))


def _serve_udp(sock: socket.socket) -> None:
    while True:
        data, peer = sock.recvfrom(1024)
        sock.sendto(data, peer)


def serve(tcp: list[int], udp: list[int]) -> None:
    threads = []
    for port in tcp:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
        s.listen(16)
        threads.append(threading.Thread(target=_serve_tcp, args=(s,), daemon=True))
    for port in udp:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", port))
        threads.append(threading.Thread(target=_serve_udp, args=(s,), daemon=True))
    for t in threads:
        t.start()
    print("ready", flush=True)
    while True:
        time.sleep(3600)


def probe_tcp(host: str, port: int, timeout: float, source: str | None) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        if source:
            s.bind((source, 0))
        try:
            s.connect((host, port))
            s.sendall(b"fms\n")
            return "ok" if s.recv(16) == b"fms\n" else "garbled"
        except ConnectionRefusedError:
            return "refused"
        except TimeoutError:
            return "timeout"


def probe_udp(host: str, port: int, timeout: float) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(b"fms\n", (host, port))
        try:
            return "ok" if s.recvfrom(16)[0] == b"fms\n" else "garbled"
        except ConnectionRefusedError:
            return "refused"
        except TimeoutError:
            return "timeout"


def _checksum(data: bytes) -> int:
    data += b"\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF


def probe_icmp(host: str, timeout: float) -> str:
    ident = os.getpid() & 0xFFFF
    header = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
    payload = b"fms-probe"
    packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, 1) + payload
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        s.settimeout(timeout)
        try:
            s.sendto(packet, (host, 0))
        except PermissionError:  # dropped by this machine's own OUTPUT rules: nothing left it
            return "timeout"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data, (peer, _) = s.recvfrom(1024)
            except TimeoutError:
                break
            icmp = data[(data[0] & 0x0F) * 4 :]
            if peer == host and icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
                return "ok"
    return "timeout"


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_serve = sub.add_parser("serve")
    p_serve.add_argument("--tcp", type=int, nargs="*", default=[])
    p_serve.add_argument("--udp", type=int, nargs="*", default=[])
    for name in ("tcp", "udp", "icmp"):
        p = sub.add_parser(name)
        p.add_argument("host")
        if name != "icmp":
            p.add_argument("port", type=int)
        p.add_argument("--timeout", type=float, default=1.5)
        if name == "tcp":
            p.add_argument("--source")
    args = parser.parse_args()
    if args.cmd == "serve":
        serve(args.tcp, args.udp)
    elif args.cmd == "tcp":
        print(probe_tcp(args.host, args.port, args.timeout, args.source))
    elif args.cmd == "udp":
        print(probe_udp(args.host, args.port, args.timeout))
    else:
        print(probe_icmp(args.host, args.timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
