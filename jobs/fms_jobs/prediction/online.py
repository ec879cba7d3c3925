"""The trained model, record by record, without Spark: the same features and the same trees in plain Python.

:class:`OnlineFeatures` keeps per device the running sums :mod:`.features`
reads back with ``lag`` and computes a record's features exactly as the Spark
expressions do (a test holds them equal on a simulated fleet).
:class:`TreeEnsemble` is the MLlib GBT's trees, read once from the fitted model
(probability = 1 / (1 + exp(-2 * sum of weighted tree outputs)), MLlib's
logistic loss). Together they let the closed-loop drill act on every record as
it is produced - the shape of the per-record scoring the stream will need.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fms_jobs.prediction.features import DEFAULT_MIN_STD, SIGNALS, FeatureSpec


@dataclass
class _Device:
    cn: list[int] = field(default_factory=lambda: [])
    c1: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in SIGNALS})
    c2: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in SIGNALS})
    last_failed_ms: int | None = None
    risks: deque[float | None] = field(default_factory=deque)


class OnlineFeatures:
    def __init__(self, spec: FeatureSpec, min_std: Mapping[str, float] | None = None) -> None:
        self.spec = spec
        self.floor = dict(DEFAULT_MIN_STD, **(min_std or {}))
        self.devices: dict[int, _Device] = {}
        self.names = spec.names

    def update(self, device: int, t_ms: int, values: Mapping[str, float], failed: bool) -> list[float] | None:
        """Add one record (in time order per device); its feature vector, or None when not scorable."""
        d = self.devices.setdefault(device, _Device())
        ok = not failed
        n_prev = d.cn[-1] if d.cn else 0
        d.cn.append(n_prev + (1 if ok else 0))
        for s in SIGNALS:
            x = float(values[s])
            p1 = d.c1[s][-1] if d.c1[s] else 0.0
            p2 = d.c2[s][-1] if d.c2[s] else 0.0
            d.c1[s].append(p1 + (x if ok else 0.0))
            d.c2[s].append(p2 + (x * x if ok else 0.0))
        if failed:
            d.last_failed_ms = t_ms
        if failed:
            return None
        return self._features(d, t_ms)

    def _features(self, d: _Device, t_ms: int) -> list[float] | None:
        spec = self.spec
        i = len(d.cn) - 1

        def at(arr: list[Any], k: int) -> Any:
            return arr[i - k] if i - k >= 0 else None

        def count(newer: int, older: int) -> int | None:
            a, b = at(d.cn, newer), at(d.cn, older)
            return None if a is None or b is None else a - b

        def mean(s: str, newer: int, older: int) -> float | None:
            n = count(newer, older)
            if n is None or n <= 0:
                return None
            return (at(d.c1[s], newer) - at(d.c1[s], older)) / n

        def std(s: str, newer: int, older: int) -> float | None:
            n = count(newer, older)
            m = mean(s, newer, older)
            if n is None or n <= 0 or m is None:
                return None
            ex2 = (at(d.c2[s], newer) - at(d.c2[s], older)) / n
            return math.sqrt(max(ex2 - m * m, 0.0))

        b_new, b_old = spec.rows(spec.baseline_end_min), spec.rows(spec.baseline_start_min)
        nb = count(b_new, b_old)
        if nb is None or nb < spec.rows(spec.min_baseline_minutes):
            return None
        v = spec.rows(spec.vol_minutes)
        out: list[float] = []
        for s in SIGNALS:
            b_mean = mean(s, b_new, b_old)
            b_std = std(s, b_new, b_old)
            if b_mean is None or b_std is None:
                return None
            scale = max(b_std, float(self.floor[s]))
            for m in spec.level_minutes:
                mm = mean(s, 0, spec.rows(m))
                if mm is None:
                    return None
                out.append((mm - b_mean) / scale)
            rate = 0.0
            for m in spec.slope_minutes:
                k, h = spec.rows(m), spec.rows(m) // 2
                a, b = mean(s, 0, h), mean(s, h, k)
                if a is None or b is None:
                    return None
                per_min = (a - b) / (h * spec.interval_s / 60.0)
                out.append(per_min / scale)
                if m == max(spec.slope_minutes):
                    rate = per_min
            sd, mv = std(s, 0, v), mean(s, 0, v)
            if sd is None or mv is None:
                return None
            out += [sd / scale, mv - b_mean, rate]
        cap = float(spec.baseline_start_min)
        since = cap if d.last_failed_ms is None else min((t_ms - d.last_failed_ms) / 60_000.0, cap)
        out.append(since)
        return out

    def smoothed(self, device: int, risk: float | None, records: int) -> float | None:
        """Mean of the device's last `records` risks (None ones skipped), as the alarm risk column."""
        d = self.devices[device]
        d.risks.append(risk)
        while len(d.risks) > records:
            d.risks.popleft()
        if risk is None:
            return None
        vals = [r for r in d.risks if r is not None]
        return sum(vals) / len(vals)


@dataclass(frozen=True)
class _Node:
    feature: int  # -1 for a leaf
    threshold: float
    value: float
    left: int
    right: int


class TreeEnsemble:
    """An MLlib GBTClassificationModel's trees, evaluated in Python."""

    def __init__(self, trees: list[list[_Node]], weights: list[float]) -> None:
        self.trees = trees
        self.weights = weights

    @classmethod
    def from_mllib(cls, gbt_model: Any) -> TreeEnsemble:
        trees = []
        for tree in gbt_model.trees:
            nodes: list[_Node] = []
            cls._walk(tree._java_obj.rootNode(), nodes)
            trees.append(nodes)
        return cls(trees, [float(w) for w in gbt_model.treeWeights])

    @staticmethod
    def _walk(jnode: Any, nodes: list[_Node]) -> int:
        idx = len(nodes)
        nodes.append(_Node(-1, 0.0, float(jnode.prediction()), -1, -1))
        if jnode.getClass().getSimpleName() == "InternalNode":
            split = jnode.split()
            left = TreeEnsemble._walk(jnode.leftChild(), nodes)
            right = TreeEnsemble._walk(jnode.rightChild(), nodes)
            nodes[idx] = _Node(int(split.featureIndex()), float(split.threshold()), 0.0, left, right)
        return idx

    def probability(self, x: list[float]) -> float:
        margin = 0.0
        for nodes, w in zip(self.trees, self.weights, strict=True):
            n = nodes[0]
            while n.feature >= 0:
                n = nodes[n.left] if x[n.feature] <= n.threshold else nodes[n.right]
            margin += w * n.value
        return 1.0 / (1.0 + math.exp(-2.0 * margin))
