"""fms-terraform: Terraform on a stack as the lab and the tests stage it, against the AWS emulator.

  fms-terraform [--env primary|dr] [--emulator-url URL] [--profile lab|minimal] TERRAFORM-ARGS...

  fms-terraform state list                                 what the lab's primary stack holds
  fms-terraform --env dr output -json
  fms-terraform --emulator-url http://127.0.0.1:5000 plan   what the sources would change now

The stack is staged first (terraform/ and platform.yml copied into $FMS_LAB_DIR/terraform/<env>,
local backend, the state kept): the work directory `fms-lab up` applies from, never the source
tree or its S3 backend. plan, apply and destroy get the lab's variable files and the emulator
endpoint, as the lab passes them. The emulator URL (`fms-lab status` shows it) defaults to
$AWS_ENDPOINT_URL; commands that only read the state need none.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from fms_tools.fmsops import terraform

# Commands that talk to AWS and read the stack's variables: the lab's values are added.
WITH_LAB_VARIABLES = frozenset({"plan", "apply", "destroy"})


def terraform_args(command: list[str], env: str, profile: str, emulator_url: str | None) -> list[str]:
    """The Terraform arguments to run: the lab's variables go after a plan/apply/destroy subcommand."""
    if not command or command[0] not in WITH_LAB_VARIABLES:
        return command
    if not emulator_url:
        raise SystemExit(f"fms-terraform {command[0]}: no emulator URL (--emulator-url or AWS_ENDPOINT_URL)")
    files = terraform.lab_var_files(env, profile)
    return [command[0], *terraform.var_args(files, {"aws_endpoint_url": emulator_url}), *command[1:]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="fms-terraform",
        description=__doc__.splitlines()[0],
        epilog="\n".join(__doc__.splitlines()[2:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--env", default="primary", help="the stack: terraform/envs/<env> (default primary)")
    parser.add_argument("--emulator-url", help="the AWS emulator (default $AWS_ENDPOINT_URL)")
    parser.add_argument("--profile", default="lab", help="lab variables: lab (default) or minimal")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="terraform's own arguments")
    args = parser.parse_args(argv)
    if not args.command:
        parser.error("give terraform's arguments, e.g. `state list`")
    url = args.emulator_url or os.environ.get("AWS_ENDPOINT_URL")
    command = terraform_args(args.command, args.env, args.profile, url)
    stack = terraform.lab_stack(args.env, url or "")
    if not url:  # reading the state only: no endpoint to point the provider at
        kept = {k: v for k, v in stack.extra_env.items() if k != "AWS_ENDPOINT_URL"}
        stack = dataclasses.replace(stack, extra_env=kept)
    stack.stage()
    if command[0] != "init" and not (stack.chdir / ".terraform").is_dir():
        stack.init()
    return stack.run(*command, check=False, capture=False).returncode


if __name__ == "__main__":
    sys.exit(main())
