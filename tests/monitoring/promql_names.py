"""Extract the metric names a PromQL expression reads (rules and Grafana panels).

Not a full PromQL parser: strings, label matchers, ranges and the label lists of
by/without/on/ignoring/group_left/group_right are removed first, then every
remaining identifier that is not followed by "(" (a function or aggregation)
and is not a keyword is a metric name. Grafana variables are neutralised.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
    "Inf",
    "NaN",
    "start",
    "end",
    "atan2",
    # aggregation operators (may be followed by "by (...)" instead of "(")
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "limitk",
    "limit_ratio",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$__\w+|\$\w+")
_IDENT = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_LABEL_VALUES = re.compile(r"^\s*label_values\s*\((.*)\)\s*$", re.S)


def metric_names(expr: str) -> set[str]:
    """Metric names read by a PromQL expression or a Grafana label_values() query."""
    match = _LABEL_VALUES.match(expr)
    if match:  # label_values(<selector>, <label>) or label_values(<label>)
        args = match.group(1)
        depth = 0
        for i, ch in enumerate(args):
            depth += (ch in "({[" and 1) or (ch in ")}]" and -1) or 0
            if ch == "," and depth == 0:
                return metric_names(args[:i])
        return set()
    text = _GRAFANA_VAR.sub("x", expr)
    text = _STRING.sub('""', text)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _LABEL_LIST.sub(r"\1", text)
    names = set()
    for ident, call in _IDENT.findall(text):
        if call or ident in KEYWORDS:
            continue
        names.add(ident)
    return names


def dashboard_queries(dashboards_dir: Path) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable of the Grafana dashboards."""
    out = []
    for path in sorted(dashboards_dir.glob("*.json")):
        dash = json.loads(path.read_text())
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                out.append((f"{path.name}: {panel['title']}", target["expr"]))
        for var in dash.get("templating", {}).get("list", []):
            if var.get("type") == "query":
                query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
                out.append((f"{path.name}: variable {var['name']}", query))
    return out
