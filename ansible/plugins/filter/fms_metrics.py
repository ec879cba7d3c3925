"""`fms_metric_samples`: samples of a Prometheus text exposition (a /metrics page), as data.

The DR pre-check (roles/mirrormaker tasks/replication_check.yml) reads MirrorMaker 2's own JMX
exporter page on the standby: the control machine may have no route to the monitoring host,
and the check must not depend on Prometheus being up in the region it vouches for.
"""

from __future__ import annotations

import math
import re
from typing import Any

# name{label="value",...} value [timestamp]  (the exporter writes no escaped quotes in our labels)
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>[^"]*)"')


def fms_metric_samples(text: str, names: list[str] | str) -> list[dict[str, Any]]:
    """Samples of the named metrics: [{name, labels, value}], finite values only.

    A JMX gauge over a window without records reads NaN: no evidence either way, so it is left out.
    """
    wanted = {names} if isinstance(names, str) else set(names)
    samples = []
    for line in str(text).splitlines():
        m = _SAMPLE.match(line)
        if not m or m["name"] not in wanted:
            continue
        try:
            value = float(m["value"])
        except ValueError:
            continue
        if not math.isfinite(value):
            continue
        labels = {lm["key"]: lm["value"] for lm in _LABEL.finditer(m["labels"] or "")}
        samples.append({"name": m["name"], "labels": labels, "value": value})
    return samples


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"fms_metric_samples": fms_metric_samples}
