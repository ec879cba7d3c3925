"""Prometheus, Alertmanager and node_exporter: upstream-layout linux-amd64 release tarballs.

Built with the Go toolchain from the Go module proxy: a throwaway module requires the
upstream module at the pinned version, and each binary is `go build`-ed the way promu (the
Prometheus release tool) does, reading the module's own .promu.yml for binaries, build tags,
-X version ldflags and the extra tarball files. Published as
mirror/github/prometheus/<name>/releases/download/v<version>/<name>-<version>.<os>-<arch>.tar.gz
with sha256sums.txt (as upstream) and a .sha512 beside each tarball.

Not reproducible from the module proxy: the web UI assets that upstream compiles with npm
and embeds with the `builtinassets` tag. When they are absent the tag is dropped and the
details record `ui_assets: false` (Prometheus' HTTP API, /metrics and promtool work; its
web pages do not).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from . import checksums
from .context import Context
from .progress import step
from .tarball import write_tarball

NAME = "prometheus"
TEMPLATE_FAMILY = "none"
ASSETS_TAG = "builtinassets"


def _settings(ctx: Context) -> dict[str, Any]:
    return ctx.versions["prometheus"]


def _platform(ctx: Context) -> str:
    cfg = _settings(ctx)
    return f"{cfg['go_os']}-{cfg['go_arch']}"


def release_dir(ctx: Context, name: str, version: str) -> Path:
    return ctx.paths.github / "prometheus" / name / "releases" / "download" / f"v{version}"


def tarball_path(ctx: Context, name: str, version: str) -> Path:
    return release_dir(ctx, name, version) / f"{name}-{version}.{_platform(ctx)}.tar.gz"


def outputs(ctx: Context) -> list[Path]:
    return [tarball_path(ctx, n, str(c["version"])) for n, c in _settings(ctx)["components"].items()]


def checksum_outputs(ctx: Context) -> list[Path]:
    files: list[Path] = []
    for path in outputs(ctx):
        files += [path.with_name(path.name + ".sha512"), path.parent / "sha256sums.txt"]
    return files


def _go() -> str | None:
    return shutil.which("go")


def _go_env(ctx: Context) -> dict[str, str]:
    cfg = _settings(ctx)
    env = dict(os.environ)
    env.update(
        {
            "GOMODCACHE": str(ctx.paths.go / "mod"),
            "GOCACHE": str(ctx.paths.go / "build"),
            "GOTOOLCHAIN": "local",  # never download a toolchain
            "CGO_ENABLED": "0",
            "GOOS": str(cfg["go_os"]),
            "GOARCH": str(cfg["go_arch"]),
            "GOFLAGS": "-mod=mod",
        }
    )
    return env


def _go_version() -> str:
    go = _go()
    if not go:
        return "missing"
    result = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=False)
    return result.stdout.strip()


def inputs(ctx: Context) -> dict[str, Any]:
    return {"prometheus": _settings(ctx), "go": _go_version(), "build": ctx.versions["build"]}


def _run(
    cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 1800
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def _must(result: subprocess.CompletedProcess[str], what: str) -> str:
    if result.returncode != 0:
        raise SystemExit(f"{what} failed:\n{(result.stdout + result.stderr)[-4000:]}")
    return result.stdout


def _ldflags(promu: dict[str, Any], version: str, module_version: str, epoch: int) -> str:
    template = str(promu.get("build", {}).get("ldflags", ""))
    date = time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(epoch))
    rendered = (
        template.replace("{{.Version}}", version)
        .replace("{{.Revision}}", module_version)
        .replace("{{.Branch}}", "go-module-proxy")
        .replace("{{user}}@{{host}}", "fms-lab@artifacts")
        .replace('{{date "20060102-15:04:05"}}', date)
    )
    return " ".join([*rendered.split(), "-s", "-w", "-buildid="])


def _tags(promu: dict[str, Any]) -> list[str]:
    tags = promu.get("build", {}).get("tags", [])
    if isinstance(tags, dict):
        tags = tags.get("all", [])
    return [str(t) for t in tags]


def _build_component(ctx: Context, name: str, cfg: dict[str, Any], go: str) -> dict[str, Any]:
    version, module, module_version = str(cfg["version"]), str(cfg["module"]), str(cfg["module_version"])
    env = _go_env(ctx)
    work = ctx.fresh_staging(f"go-{name}")
    (work / "go.mod").write_text(f"module fmslab.build/{name}\n", encoding="utf-8")
    with step(f"prometheus: {name} {version}: fetching {module}@{module_version}"):
        _must(_run([go, "get", f"{module}@{module_version}"], work, env), f"go get {module}@{module_version}")
    src = Path(_must(_run([go, "list", "-m", "-f", "{{.Dir}}", module], work, env), "go list").strip())
    promu_file = src / ".promu.yml"
    promu: dict[str, Any] = yaml.safe_load(promu_file.read_text()) if promu_file.is_file() else {}
    binaries = promu.get("build", {}).get("binaries") or [{"name": name, "path": "."}]
    tags = _tags(promu)
    ldflags = _ldflags(promu, version, module_version, ctx.epoch)
    dist = work / f"{name}-{version}.{_platform(ctx)}"
    dist.mkdir()
    ui_assets = True
    for binary in binaries:
        package = f"{module}/{str(binary.get('path', '.')).removeprefix('./')}".rstrip("/.")
        target = dist / str(binary["name"])

        def build(
            build_tags: list[str], package: str = package, target: Path = target
        ) -> subprocess.CompletedProcess[str]:
            cmd = [go, "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", str(target)]
            if build_tags:
                cmd += ["-tags", ",".join(build_tags)]
            return _run([*cmd, package], work, env)

        with step(f"prometheus: go build {binary['name']} ({name} {version})"):
            result = build(tags)
            if result.returncode != 0 and ASSETS_TAG in tags:
                # The embedded web UI is an npm build output, not part of the Go module.
                ui_assets = False
                result = build([t for t in tags if t != ASSETS_TAG])
            _must(result, f"go build {package}")
    missing: list[str] = []
    for relative in promu.get("tarball", {}).get("files", []) or ["LICENSE", "NOTICE"]:
        source = src / str(relative)
        if not source.exists():
            missing.append(str(relative))
            continue
        target = dist / source.name
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)
    for path in dist.rglob("*"):
        path.chmod(
            0o755
            if path.is_dir() or (path.parent == dist and path.name in {b["name"] for b in binaries})
            else 0o644
        )
    tarball = tarball_path(ctx, name, version)
    with step(f"prometheus: packing {tarball.name}"):
        write_tarball(dist, tarball, epoch=ctx.epoch, level=ctx.gzip_level)
    (tarball.parent / "sha256sums.txt").write_text(
        f"{checksums.digest(tarball, 'sha256')}  {tarball.name}\n", encoding="ascii"
    )
    shutil.rmtree(work)
    return {
        "binaries": [str(b["name"]) for b in binaries],
        "tags": [t for t in tags if ui_assets or t != ASSETS_TAG],
        "ui_assets": ui_assets if ASSETS_TAG in tags else None,
        "missing_tarball_files": missing,
    }


def build(ctx: Context) -> dict[str, Any]:
    go = _go()
    if not go:
        raise SystemExit(
            "go not found: install a Go toolchain (Debian: golang-go) to build Prometheus tarballs"
        )
    details = {}
    for name, cfg in _settings(ctx)["components"].items():
        details[name] = _build_component(ctx, name, cfg, go)
    return details
