"""moto_server with fidelity fixes for the AWS APIs the platform's Terraform uses.

moto 5.2 answers GetBucketReplication with a fixed rule shape (delete-marker
replication always "Disabled", no SourceSelectionCriteria) whatever was put.
Terraform then sees drift that real S3 would never show. This launcher makes
the emulator echo the rule it stored, then runs moto's own server `main`.

Security group rules: on a loaded machine the AWS provider now and then sends an
AuthorizeSecurityGroupIngress/Egress that moto has already carried out (the SDK
retries a request whose answer came late), and moto answers the replay with
InvalidPermission.Duplicate: the apply fails although the rule is exactly as asked.
Here a request whose every rule already exists *identically* (protocol, ports,
source and, for group sources, description) answers with those rules; a rule
that differs in anything is still refused as AWS refuses it.
SDK retries: a retry of an API call the emulator already answered gets that answer
instead of running the call again (see sdk_retry_replay.py).
Usage is identical to `moto_server` (e.g. `-H 127.0.0.1 -p 5000`).
"""

from __future__ import annotations

import sys
from typing import Any

import moto.server
from moto.ec2.exceptions import InvalidPermissionDuplicateError
from moto.ec2.models.security_groups import SecurityGroupBackend
from moto.s3 import responses as s3_responses
from moto.s3.exceptions import ReplicationConfigurationNotFoundError
from moto.server import main

from fms_tools.fmsops.sdk_retry_replay import SdkRetryReplay


def _get_bucket_replication(self: Any) -> Any:
    self.data["Action"] = "GetBucketReplication"
    replication = self.backend.get_bucket_replication(self.bucket_name)
    if not replication:
        raise ReplicationConfigurationNotFoundError(bucket_name=self.bucket_name)
    rules = []
    for rule in replication["Rule"]:
        echoed = {
            "ID": rule["ID"],
            "Priority": rule["Priority"],
            "Status": rule["Status"],
            "DeleteMarkerReplication": rule.get("DeleteMarkerReplication") or {"Status": "Disabled"},
            "Filter": {"Prefix": ""},
            "Destination": rule["Destination"],
        }
        if rule.get("SourceSelectionCriteria"):
            echoed["SourceSelectionCriteria"] = rule["SourceSelectionCriteria"]
        rules.append(echoed)
    return self.serialized(
        s3_responses.ActionResult({"ReplicationConfiguration": {"Role": replication["Role"], "Rules": rules}})
    )


s3_responses.S3Response.get_bucket_replication = _get_bucket_replication


def _same_rule(a: Any, b: Any) -> bool:
    """moto's rule equality plus the descriptions (moto ignores a CIDR rule's)."""
    return (
        a == b
        and a.ip_range.get("Description") == b.ip_range.get("Description")
        and a.source_group.get("Description") == b.source_group.get("Description")
    )


def _replay_tolerant(name: str, rules_attr: str, is_egress: bool) -> Any:
    original = getattr(SecurityGroupBackend, name)

    def authorize(
        self: Any,
        group_name_or_id: str,
        ip_protocol: str,
        from_port: str,
        to_port: str,
        ip_ranges: list[Any],
        sgrule_tags: dict[str, str] | None = None,
        source_groups: list[dict[str, Any]] | None = None,
        prefix_list_ids: list[dict[str, str]] | None = None,
        security_rule_ids: list[str] | None = None,
        vpc_id: str | None = None,
    ) -> Any:
        args = (ip_protocol, from_port, to_port, ip_ranges, sgrule_tags, source_groups, prefix_list_ids)
        try:
            return original(self, group_name_or_id, *args, security_rule_ids, vpc_id)
        except InvalidPermissionDuplicateError:
            group = self.get_security_group_by_name_or_id(group_name_or_id, vpc_id)
            if group is None or not isinstance(ip_ranges or [], list):
                raise
            existing = getattr(group, rules_attr)
            wanted = list(
                self._iterate_security_rules(
                    ip_protocol,
                    group.group_id,
                    from_port,
                    to_port,
                    ip_ranges or [],
                    self._add_source_group(source_groups, vpc_id),
                    prefix_list_ids or [],
                    is_egress=is_egress,
                    tags=sgrule_tags or {},
                )
            )
            replayed = [next((e for e in existing if _same_rule(e, w)), None) for w in wanted]
            if not wanted or any(r is None for r in replayed):
                raise
            return replayed, group

    return authorize


SecurityGroupBackend.authorize_security_group_ingress = _replay_tolerant(
    "authorize_security_group_ingress", "ingress_rules", is_egress=False
)
SecurityGroupBackend.authorize_security_group_egress = _replay_tolerant(
    "authorize_security_group_egress", "egress_rules", is_egress=True
)

_dispatcher = moto.server.DomainDispatcherApplication


def _log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _dispatcher_answering_retries_once(*args: Any, **kwargs: Any) -> SdkRetryReplay:
    return SdkRetryReplay(_dispatcher(*args, **kwargs), log=_log)


moto.server.DomainDispatcherApplication = _dispatcher_answering_retries_once

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
