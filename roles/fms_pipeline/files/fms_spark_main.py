#!/usr/bin/env python3
"""spark-submit entry point of the FMS jobs (spark-submit needs a file, not ``-m``).

    spark-submit ... fms_spark_main.py MODULE [ARG | @FILE]...

Runs MODULE as ``__main__`` exactly like ``python -m MODULE``. An ``@FILE``
argument is replaced by the lines of FILE, one argument per line (the format of
argparse's ``fromfile_prefix_chars``); blank lines and lines starting with ``#``
are skipped. The deployment keeps each batch job's options in such a file
(``/etc/fms/hourly-summary.args``, ``/etc/fms/archive.args``).
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path


def expand(args: list[str]) -> list[str]:
    out: list[str] = []
    for arg in args:
        if arg.startswith("@") and len(arg) > 1:
            for line in Path(arg[1:]).read_text(encoding="utf-8").splitlines():
                item = line.strip()
                if item and not item.startswith("#"):
                    out.append(item)
        else:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-"):
        print("usage: fms_spark_main.py MODULE [ARG | @FILE]...", file=sys.stderr)
        raise SystemExit(64)
    module = args[0]
    sys.argv = [module, *expand(args[1:])]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
