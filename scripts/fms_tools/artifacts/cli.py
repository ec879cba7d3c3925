"""Command line: build / serve / path / verify."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from .config import load_versions, resolve_paths
from .context import Context

TARGET_NAMES = ("kafka", "hadoop", "spark", "maven", "jmx", "prometheus")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fms-artifacts",
        description="Build and serve the lab's artifact mirror (Apache, Maven and GitHub layouts).",
    )
    parser.add_argument("--mirror", type=Path, help="mirror root (default $FMS_CACHE_DIR/mirror)")
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="assemble archives (skips targets whose inputs are unchanged)")
    build.add_argument(
        "targets",
        nargs="*",
        default=["all"],
        choices=[*TARGET_NAMES, "all"],
        metavar="TARGET",
        help=f"one or more of {', '.join(TARGET_NAMES)}, all (default)",
    )
    build.add_argument("--mirror", type=Path, dest="mirror_sub", help=argparse.SUPPRESS)
    build.add_argument("--force", action="store_true", help="rebuild even when up to date")

    serve = sub.add_parser("serve", help="serve the mirror over HTTP")
    serve.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8585, help="port (default 8585)")
    serve.add_argument("--mirror", type=Path, dest="mirror_sub", help=argparse.SUPPRESS)

    path = sub.add_parser("path", help="print the archive path(s) of a target")
    path.add_argument("target", choices=TARGET_NAMES)
    path.add_argument("--mirror", type=Path, dest="mirror_sub", help=argparse.SUPPRESS)

    verify = sub.add_parser("verify", help="check every checksum file in the mirror")
    verify.add_argument("--mirror", type=Path, dest="mirror_sub", help=argparse.SUPPRESS)
    return parser


def _build(ctx: Context, targets: list[str], force: bool) -> int:
    from . import builders
    from .progress import say

    names = list(TARGET_NAMES) if "all" in targets else list(dict.fromkeys(targets))
    failed: list[str] = []
    for name in names:
        try:
            builders.run(name, ctx, force=force)
        except SystemExit as exc:  # builders raise SystemExit(message) for expected failures
            say(f"{name}: FAILED: {exc}")
            failed.append(name)
    if failed:
        say(f"failed targets: {', '.join(failed)}")
        return 1
    say("all requested targets are up to date")
    return 0


def _verify(ctx: Context) -> int:
    from .checksums import verify_checksum_file

    bad = 0
    files = sorted(
        p
        for p in ctx.paths.mirror.rglob("*")
        if p.is_file() and (p.suffix in {".sha512", ".sha1"} or p.name == "sha256sums.txt")
    )
    for checksum_file in files:
        ok = verify_checksum_file(checksum_file)
        bad += not ok
        if not ok:
            print(f"MISMATCH {checksum_file}")
    print(f"{len(files) - bad} checksum files OK, {bad} bad")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    mirror = getattr(args, "mirror_sub", None) or args.mirror
    ctx = Context(paths=resolve_paths(mirror), versions=load_versions())
    if args.command == "serve":
        from .serve import serve

        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        return serve(ctx.paths.mirror, args.bind, args.port)
    if args.command == "path":
        from . import builders

        for output in builders.TARGETS[args.target].outputs(ctx):
            print(output)
        return 0
    if args.command == "verify":
        return _verify(ctx)
    return _build(ctx, args.targets, args.force)
