"""fms-moduledocs [--check] (make docs): write (or check) the READMEs of roles/* and terraform/modules/*."""

from __future__ import annotations

import argparse

from . import FIX_COMMAND, REPO, stale, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fms-moduledocs", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report missing or stale READMEs (exit 1)")
    args = parser.parse_args(argv)
    if args.check:
        problems = stale()
        for line in problems:
            print(line)
        if problems:
            print(f"run `{FIX_COMMAND}` to regenerate them")
        return 1 if problems else 0
    for path in write():
        print(f"wrote {path.relative_to(REPO)}")
    return 0
