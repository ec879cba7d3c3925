#!/usr/bin/env python3
"""The local lab: AWS emulator + Terraform + one systemd-nspawn host per EC2 instance.

  lab.py up [--env primary|dr] [--profile lab|minimal] [--emulator-url URL --no-apply]
  lab.py down [--env primary|dr ... | --all]      (default: --all)
  lab.py status
  lab.py ssh HOST [command...]

State lives in $FMS_LAB_DIR (default <repo>/.lab); caches in $FMS_CACHE_DIR.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lab import envs, hosts, orchestrate, state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lab.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p_up = sub.add_parser("up", help="bring an env's hosts up (idempotent, resumable)")
    p_up.add_argument("--env", default="primary", choices=sorted(envs.ENVS))
    p_up.add_argument("--profile", default="lab", choices=sorted(envs.PROFILES))
    p_up.add_argument("--emulator-url", help="use this already running emulator (the lab will not stop it)")
    p_up.add_argument(
        "--no-apply", action="store_true", help="skip Terraform: host the instances the emulator already has"
    )

    p_down = sub.add_parser("down", help="remove hosts, bridges, NAT rules, mounts and the emulator")
    group = p_down.add_mutually_exclusive_group()
    group.add_argument("--env", action="append", choices=sorted(envs.ENVS), help="only this env (repeatable)")
    group.add_argument("--all", action="store_true", help="everything the lab made (the default)")

    sub.add_parser("status", help="every host: roles, IP, state, ssh, systemd, memory, service URLs")

    p_ssh = sub.add_parser("ssh", help="ssh to a lab host as root with the lab key")
    p_ssh.add_argument("host")
    p_ssh.add_argument("cmd", nargs=argparse.REMAINDER)

    args = parser.parse_args(argv)
    if args.command == "up":
        orchestrate.up(args.env, args.profile, emulator_url=args.emulator_url, apply=not args.no_apply)
        return orchestrate.print_status()
    if args.command == "down":
        orchestrate.down(None if args.all or not args.env else args.env)
        return 0
    if args.command == "status":
        return orchestrate.print_status()
    if args.command == "ssh":
        if args.host not in {h["name"] for h in state.load_hosts().values()} | {
            h["ip"] for h in state.load_hosts().values()
        }:
            print(f"unknown lab host {args.host!r}; `lab.py status` lists them", file=sys.stderr)
            return 2
        cmd = " ".join(args.cmd) if args.cmd else None
        argv_ssh = hosts.ssh_command(args.host, cmd, tty=cmd is None and sys.stdin.isatty())
        os.execvp(argv_ssh[0], argv_ssh)
    return 2


if __name__ == "__main__":
    sys.exit(main())
