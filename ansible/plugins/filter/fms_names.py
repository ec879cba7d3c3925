"""Filters for the names FMS services address hosts by.

`fms_node_name`: the DNS-safe form of an inventory host name. Inventory names may contain
characters a host name cannot (e.g. "fms-lab-hdfs_namenode-1"): Java rejects underscores in
URI hosts and TLS SNI. group_vars/all.yml names this stack's hosts with it, and
kafka_mirror_source.yml the peer stack's brokers (`fms_inventory_hosts`, from the peer's
`ansible-inventory --list`), so both sides agree on a broker's name (its certificate carries
it, its advertised listener uses it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_NOT_DNS = re.compile(r"[^a-z0-9.-]")


def fms_node_name(inventory_hostname: str) -> str:
    return _NOT_DNS.sub("-", str(inventory_hostname).lower())


def fms_inventory_hosts(listed: str | Mapping[str, Any], group: str) -> list[dict[str, str]]:
    """The hosts of `group` in `ansible-inventory --list` output: [{name, address}], by name.

    Takes the output as text: ansible-core 2.19 writes composed values as {"__ansible_unsafe": ...},
    which its own from_json filter refuses to decode.

    name is the host's fms_node_name, address its fms_node_address (the aws_ec2 inventories
    compose it: the private address). A host without an address is left out: nothing could
    reach it.
    """
    inventory = json.loads(listed) if isinstance(listed, str) else listed
    hostvars = inventory.get("_meta", {}).get("hostvars", {})
    found = []
    for host in sorted(inventory.get(group, {}).get("hosts", [])):
        address = hostvars.get(host, {}).get("fms_node_address")
        if isinstance(address, Mapping):  # ansible-core 2.19 --list marks composed values unsafe
            address = address.get("__ansible_unsafe")
        if address:
            found.append({"name": fms_node_name(host), "address": str(address)})
    return found


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"fms_node_name": fms_node_name, "fms_inventory_hosts": fms_inventory_hosts}
