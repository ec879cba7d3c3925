"""Every systemd unit template renders to well-formed unit lines, for every service it serves.

Rendered the way Ansible's template module renders (trim_blocks: a block tag eats its
newline - an ``{% endif %}`` at a line's end silently glues the next line on), with the
role's defaults and the variables the role derives at run time.
"""

from __future__ import annotations

import re
from pathlib import Path

import jinja2
import pytest
import yaml
from ansible.plugins.filter.core import FilterModule

# the templates' regexes ("\.") are Jinja string escapes, as Ansible renders them
pytestmark = pytest.mark.filterwarnings("ignore:invalid escape sequence:DeprecationWarning")

REPO = Path(__file__).resolve().parents[2]
UNIT_LINE = re.compile(r"^([A-Z][A-Za-z]+)=")
SECTION = re.compile(r"^\[(Unit|Service|Install|Timer|Socket)\]$")


def _render(role: str, template: str, extra: dict[str, object]) -> str:
    defaults = yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text())
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(REPO / "roles" / role / "templates")),
        trim_blocks=True,
        undefined=jinja2.ChainableUndefined,
    )
    env.filters.update(FilterModule().filters())  # Ansible's own filters (bool, to_json, ...)
    variables = {**defaults, "ansible_managed": "Ansible managed", "lookup": lambda *_, **__: "", **extra}
    # defaults refer to each other ("{{ spark_state_dir }}/recovery"): resolve one level
    for key, value in list(variables.items()):
        if isinstance(value, str) and "{{" in value:
            try:
                variables[key] = env.from_string(value).render(**variables)
            except (jinja2.TemplateError, TypeError):
                # derived from facts or group_vars at run time (a filter on an undefined value
                # raises TypeError, e.g. "{{ fms_secrets_dir | dirname }}")
                variables[key] = ""
    return env.get_template(template).render(**variables)


def _assert_well_formed(text: str) -> None:
    continued = False
    for n, line in enumerate(text.splitlines(), 1):
        was_continued, continued = continued, line.endswith("\\")
        if not line.strip() or line.startswith("#") or SECTION.match(line) or was_continued:
            continue
        assert UNIT_LINE.match(line), f"line {n} is not KEY=VALUE: {line!r}"
        key, _, value = line.partition("=")
        glued = re.search(r"[a-z0-9/\"](?:[A-Z][a-z]+){2,}=", value)
        assert not glued, f"line {n}: another setting glued onto {key}: {line!r}"


@pytest.mark.parametrize("service", ["master", "worker", "history"])
@pytest.mark.parametrize("recovery", ["FILESYSTEM", "NONE"])
def test_spark_units_are_well_formed(service: str, recovery: str) -> None:
    text = _render(
        "spark",
        "spark.service.j2",
        {
            "spark_service": service,
            "spark_master_recovery_mode": recovery,
            "fms_node_name": "spark-1",
            "spark_master_port": 7077,
            "spark_master_url": "spark://spark-1:7077",
            "java_runtime_home": "/usr/lib/jvm/java-17",
            "jmx_exporter_javaagent_opts": {"spark_master": "-javaagent:/opt/jmx.jar=7074:/etc/jmx/m.yml"},
        },
    )
    _assert_well_formed(text)
    service_lines = dict(
        line.split("=", 1)
        for line in text.splitlines()
        if UNIT_LINE.match(line) and "Environment" not in line
    )
    rw = service_lines["ReadWritePaths"].split()
    assert rw[:2] == ["/var/lib/spark", "/var/log/spark"]
    recovering = service == "master" and recovery == "FILESYSTEM"
    assert ("-Dspark.deploy.recoveryMode=FILESYSTEM" in text) is recovering
    assert ("/var/lib/spark/recovery" in rw) is (service == "master")
    assert "ProtectHome" in service_lines and "NoNewPrivileges" in service_lines


UNIT_TEMPLATES = sorted((REPO / "roles").glob("*/templates/*.service.j2")) + sorted(
    (REPO / "roles").glob("*/templates/*.timer.j2")
)


# variables the roles derive at run time (facts tasks) that their units use
DERIVED = {"kafka": {"kafka_metadata_dir": "/var/lib/kafka/metadata"}}


@pytest.mark.parametrize("template", UNIT_TEMPLATES, ids=lambda p: f"{p.parts[-3]}/{p.name}")
def test_every_unit_template_is_well_formed_with_the_role_defaults(template: Path) -> None:
    role = template.parts[-3]
    extra = {"java_runtime_home": "/usr/lib/jvm/java-17", **DERIVED.get(role, {})}
    _assert_well_formed(_render(role, template.name, extra))
