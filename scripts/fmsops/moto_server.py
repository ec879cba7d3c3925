"""moto_server with fidelity fixes for the AWS APIs the platform's Terraform uses.

moto 5.2 answers GetBucketReplication with a fixed rule shape (delete-marker
replication always "Disabled", no SourceSelectionCriteria) whatever was put.
Terraform then sees drift that real S3 would never show. This launcher makes
the emulator echo the rule it stored, then runs moto's own server `main`.
Usage is identical to `moto_server` (e.g. `-H 127.0.0.1 -p 5000`).
"""

from __future__ import annotations

import sys
from typing import Any

from moto.s3 import responses as s3_responses
from moto.s3.exceptions import ReplicationConfigurationNotFoundError
from moto.server import main


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

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
