"""Shared fixtures of the pipeline unit tests (no Spark, no Kafka)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from fms_jobs.quality.rulebook import DEFAULT_RULES_PATH, QualityRules, load_rules, rules_from_dict


@pytest.fixture(scope="session")
def rules() -> QualityRules:
    return load_rules()


@pytest.fixture
def rules_doc() -> dict[str, Any]:
    """A fresh, mutable copy of the packaged rules document."""
    return copy.deepcopy(yaml.safe_load(Path(DEFAULT_RULES_PATH).read_text()))


@pytest.fixture
def make_rules(rules_doc: dict[str, Any]) -> Callable[..., QualityRules]:
    def build(**changes: Any) -> QualityRules:
        doc = copy.deepcopy(rules_doc)
        for dotted, value in changes.items():
            keys = dotted.split("__")
            node = doc
            for k in keys[:-1]:
                node = node[k]
            node[keys[-1]] = value
        return rules_from_dict(doc)

    return build
