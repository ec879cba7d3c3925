"""The trained model, record by record, without Spark: the same trees in plain Python.

The features come from :class:`.incremental.IncrementalFeatures` (bounded
per-device state, the same numbers as :mod:`.features`).
:class:`TreeEnsemble` is the MLlib GBT's trees, read once from the fitted model
(probability = 1 / (1 + exp(-2 * sum of weighted tree outputs)), MLlib's
logistic loss). Together they let the closed-loop drill act on every record as
it is produced - the shape of the per-record scoring the stream will need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


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
