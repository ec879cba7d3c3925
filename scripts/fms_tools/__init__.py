"""The project's tools: one package, installed editable by `make bootstrap` (scripts/pyproject.toml).

  lab          the local lab: AWS emulator + Terraform + systemd-nspawn hosts   (fms-lab)
  artifacts    the lab's artifact mirror: build and serve Apache-layout archives (fms-artifacts)
  bench        the pipeline benchmark, loopback or on the lab                   (fms-bench)
  fmsops       wrappers the others share: the AWS emulator (fms-emulator), the Terraform CLI
               (fms-terraform), the platform contract (platform.yml), processes, a loopback Kafka broker
  moduledocs   the generated part of the roles' and Terraform modules' READMEs (fms-moduledocs)

Every tool is also `python -m fms_tools.<name>`; the tools start one another that way. They act on
the checkout they are imported from (REPO): the install is editable, and the Makefile puts this
checkout's scripts/ first on PYTHONPATH because the venv is shared by several clones.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
