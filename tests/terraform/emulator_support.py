"""Fixtures' helpers: an emulator on a free loopback port and staged stacks."""

from __future__ import annotations

from pathlib import Path

import boto3
from fms_tools.fmsops.emulator import Emulator, boto_credentials, free_port


def start_emulator(workdir: Path) -> Emulator:
    return Emulator(port=free_port(), log_path=workdir / "moto.log").start()


def client(service: str, emulator: Emulator, region: str):
    return boto3.client(service, region_name=region, endpoint_url=emulator.url, **boto_credentials())


def hcl(value: object) -> str:
    """Render a Python value as an HCL literal for -var (JSON is valid HCL for these types)."""
    import json

    return json.dumps(value)
