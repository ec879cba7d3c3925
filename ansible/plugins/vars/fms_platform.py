"""Ansible vars plugin: the platform contract as the variable ``fms_platform`` on every host."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from ansible.errors import AnsibleError
from ansible.inventory.group import InventoryObjectType

from ansible.plugins.vars import BaseVarsPlugin

DOCUMENTATION = """
    name: fms_platform
    short_description: Exposes the FMS platform contract (platform.yml) as fms_platform
    description:
      - Reads platform.yml at the repository root (two directories above ansible/) through
        scripts/fms_tools/fmsops/platform_contract.py, which checks it, and sets it as the variable
        C(fms_platform) of the C(all) group, so every host sees it.
      - The role defaults refer to it for every listener and exporter port, e.g. C(kafka_internal_port)
        is C(fms_platform.ports.kafka_internal.port); Terraform builds the security group rules from
        the same file, so a port is written once.
      - The Kafka topic names are its C(topics) (C(kafka_topic_raw) is C(fms_platform.topics.raw.name)).
      - Enabled in ansible/ansible.cfg (vars_plugins_enabled).
    options:
      stage:
        ini:
          - key: stage
            section: vars_fms_platform
        env:
          - name: ANSIBLE_VARS_PLUGIN_STAGE
    extends_documentation_fragment:
      - vars_plugin_staging
"""

REPO = Path(__file__).resolve().parents[3]
LOADER = REPO / "scripts" / "fms_tools" / "fmsops" / "platform_contract.py"


def _loader() -> ModuleType:
    # Loaded by path, from the checkout this plugin belongs to: the controller's Python need
    # not have the fms_tools package, and the project keeps one loader for Python, tests and
    # Ansible alike.
    spec = importlib.util.spec_from_file_location("fms_platform_contract", LOADER)
    if spec is None or spec.loader is None:
        raise AnsibleError(f"fms_platform: cannot load {LOADER}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


_CONTRACT: dict | None = None


def contract() -> dict:
    """platform.yml, checked once per Ansible process."""
    global _CONTRACT
    if _CONTRACT is None:
        loader = _loader()
        try:
            _CONTRACT = dict(loader.load().data)
        except (OSError, loader.ContractError) as e:
            raise AnsibleError(f"fms_platform: {loader.PLATFORM_FILE}: {e}") from e
    return _CONTRACT


class VarsModule(BaseVarsPlugin):
    REQUIRES_ENABLED = True
    is_stateless = True

    def get_vars(self, loader, path, entities, cache=True):
        super().get_vars(loader, path, entities)
        entities = entities if isinstance(entities, list) else [entities]
        # Set on the `all` group only: every host inherits it, at the lowest
        # inventory precedence, so role defaults may refer to it.
        if any(e.base_type == InventoryObjectType.GROUP and e.name == "all" for e in entities):
            return {"fms_platform": contract()}
        return {}
