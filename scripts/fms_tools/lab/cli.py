"""The local lab: AWS emulator + Terraform + one systemd-nspawn host per EC2 instance.

  fms-lab up [--env primary|dr] [--profile auto|lab|minimal] [--emulator-url URL --no-apply] [--no-mirror]
  fms-lab down [--env primary|dr ... | --all]      (default: --all)
  fms-lab converge [--env primary|dr] [--playbook site|dr_precheck|...|PATH] [ANSIBLE-ARGS...]
  fms-lab testinfra [--env primary|dr] [PYTEST-ARGS...]
  fms-lab status
  fms-lab firewall [--env primary|dr ...] [--apply]
  fms-lab ssh HOST [command...]

State lives in $FMS_LAB_DIR (default <repo>/.lab); caches in $FMS_CACHE_DIR.
"""

from __future__ import annotations

import argparse
import os
import sys

from fms_tools.lab import converge, envs, hosts, orchestrate, services, state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fms-lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p_up = sub.add_parser("up", help="bring an env's hosts up (idempotent, resumable)")
    p_up.add_argument("--env", default="primary", choices=sorted(envs.ENVS))
    p_up.add_argument(
        "--profile",
        default=envs.AUTO_PROFILE,
        choices=[envs.AUTO_PROFILE, *sorted(envs.PROFILES)],
        help="host layout; auto (default): the largest this machine's cores and memory run comfortably",
    )
    p_up.add_argument("--emulator-url", help="use this already running emulator (the lab will not stop it)")
    p_up.add_argument(
        "--no-apply", action="store_true", help="skip Terraform: host the instances the emulator already has"
    )
    p_up.add_argument("--no-mirror", action="store_true", help="do not build and serve the artifact mirror")

    p_down = sub.add_parser(
        "down", help="remove hosts, bridges, NAT rules, mounts, the mirror and the emulator"
    )
    group = p_down.add_mutually_exclusive_group()
    group.add_argument("--env", action="append", choices=sorted(envs.ENVS), help="only this env (repeatable)")
    group.add_argument("--all", action="store_true", help="everything the lab made (the default)")

    p_conv = sub.add_parser(
        "converge", help="run ansible/site.yml (or another playbook) on an env's hosts, as on AWS"
    )
    p_conv.add_argument("--env", default="primary", choices=sorted(envs.ENVS))
    p_conv.add_argument(
        "--playbook", default="site", help=f"{', '.join(converge.PLAYBOOKS)} or a playbook path"
    )

    p_infra = sub.add_parser("testinfra", help="run the testinfra suite (tests/infra) against an env's hosts")
    p_infra.add_argument("--env", default="primary", choices=sorted(envs.ENVS))

    sub.add_parser(
        "status", help="emulator, mirror, and every host: roles, IP, state, ssh, systemd, memory, URLs"
    )

    p_fw = sub.add_parser(
        "firewall", help="the security groups the lab enforces between hosts: rules and drops per host"
    )
    p_fw.add_argument("--env", action="append", choices=sorted(envs.ENVS), help="only this env (repeatable)")
    p_fw.add_argument(
        "--apply", action="store_true", help="read the groups from the emulator again and enforce them first"
    )

    p_ssh = sub.add_parser("ssh", help="ssh to a lab host as root with the lab key")
    p_ssh.add_argument("host")
    p_ssh.add_argument("cmd", nargs=argparse.REMAINDER)

    # Arguments fms-lab does not know go on, in order, to ansible-playbook (converge) or pytest
    # (testinfra): `converge --playbook pipeline -e x=1`. (argparse.REMAINDER refused a first
    # argument that looks like an option.) After `--` everything is passed on as it is.
    args, passed_on = parser.parse_known_args(argv)
    if passed_on and args.command not in ("converge", "testinfra"):
        parser.error(f"unrecognized arguments: {' '.join(passed_on)}")
    if passed_on[:1] == ["--"]:
        passed_on = passed_on[1:]
    args.ansible_args = args.pytest_args = passed_on
    if args.command == "up":
        orchestrate.up(
            args.env,
            args.profile,
            emulator_url=args.emulator_url,
            apply=not args.no_apply,
            serve_mirror=not args.no_mirror,
        )
        rc = orchestrate.print_status()
        orchestrate.print_next_steps(args.env)
        return rc
    if args.command == "down":
        orchestrate.down(None if args.all or not args.env else args.env)
        return 0
    if args.command == "converge":
        try:
            run = converge.run_playbook(args.env, args.playbook, args.ansible_args)
        except converge.ConvergeError as e:
            print(f"fms-lab converge: {e}", file=sys.stderr)
            return 1
        if not run.ok:
            print(f"fms-lab converge: {run.playbook} failed; the log is {run.log}", file=sys.stderr)
            return 1
        services.record(args.env)
        rc = orchestrate.print_status()
        if args.playbook in ("site", "pipeline"):
            services.print_pipeline_steps(args.env)
        return rc
    if args.command == "testinfra":
        inv = converge.inventory_for(args.env)
        cmd = [sys.executable, "-m", "pytest", "tests/infra", "--fms-inventory", inv]
        cmd += ["--fms-inventory", "inventory/lab", *args.pytest_args]
        try:
            env = converge.ansible_env(args.env)
        except converge.ConvergeError as e:
            print(f"fms-lab testinfra: {e}", file=sys.stderr)
            return 1
        os.chdir(converge.REPO)
        os.execvpe(cmd[0], cmd, env)
    if args.command == "status":
        return orchestrate.print_status()
    if args.command == "firewall":
        if args.apply:
            for name in args.env or sorted(state.load_lab()["envs"]):
                orchestrate.reapply_security_groups(name)
        return orchestrate.print_firewall(args.env)
    if args.command == "ssh":
        if args.host not in {h["name"] for h in state.load_hosts().values()} | {
            h["ip"] for h in state.load_hosts().values()
        }:
            print(f"unknown lab host {args.host!r}; `fms-lab status` lists them", file=sys.stderr)
            return 2
        cmd = " ".join(args.cmd) if args.cmd else None
        argv_ssh = hosts.ssh_command(args.host, cmd, tty=cmd is None and sys.stdin.isatty())
        os.execvp(argv_ssh[0], argv_ssh)
    return 2
