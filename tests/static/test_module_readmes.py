"""Every role and Terraform module has a README whose generated section matches its sources.

The READMEs are regenerated in memory (fms_tools.moduledocs) and compared with the files: a new role or
module without a README, or a variable added to argument_specs/variables.tf without `make docs`, fails
here with the fix command.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fms_tools import moduledocs

REPO = Path(__file__).resolve().parents[2]


def test_every_role_and_module_has_a_current_readme() -> None:
    problems = moduledocs.stale(REPO)
    assert not problems, f"run `{moduledocs.FIX_COMMAND}`:\n  " + "\n  ".join(problems)


def test_every_readme_says_what_its_module_does() -> None:
    """The hand-written part (before the generated section) is more than the title: `make docs` seeds
    it for a new module, a README whose paragraph was deleted fails."""
    thin = []
    for module in moduledocs.modules(REPO):
        text = module.readme.read_text() if module.readme.exists() else ""
        prose = text.split(moduledocs.GENERATED_BEGIN)[0].replace(moduledocs.title(module), "").strip()
        if not prose:
            thin.append(str(module.readme.relative_to(REPO)))
    assert not thin, f"write what these modules do, above the generated section: {thin}"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the parts of the repository the generator reads."""
    for part in ("roles", "terraform/modules", "terraform/envs", "ansible"):
        shutil.copytree(
            REPO / part, tmp_path / part, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*")
        )
    return tmp_path


def test_new_modules_without_readme_and_a_changed_variable_are_reported(tree: Path) -> None:
    (tree / "roles/newrole/meta").mkdir(parents=True)
    (tree / "roles/newrole/meta/argument_specs.yml").write_text(
        "argument_specs:\n  main:\n    short_description: A role added in another branch\n"
        "    options:\n      newrole_port: {type: int, default: 1, description: Port.}\n"
    )
    (tree / "terraform/modules/new_module").mkdir()
    (tree / "terraform/modules/new_module/variables.tf").write_text(
        'variable "peer_vpc_id" {\n  type = string\n}\n'
    )
    variables = tree / "terraform/modules/kms/variables.tf"
    variables.write_text(
        variables.read_text() + '\nvariable "added" {\n  description = "New."\n  type        = string\n}\n'
    )
    assert sorted(moduledocs.stale(tree)) == [
        "roles/newrole/README.md: missing",
        "terraform/modules/kms/README.md: its generated section differs from terraform sources",
        "terraform/modules/new_module/README.md: missing",
    ]
    kms = (tree / "terraform/modules/kms/README.md").read_text()
    moduledocs.write(tree)
    assert moduledocs.stale(tree) == []
    # The hand-written paragraph survives; the new variable is listed as required.
    updated = (tree / "terraform/modules/kms/README.md").read_text()
    assert updated.split(moduledocs.GENERATED_BEGIN)[0] == kms.split(moduledocs.GENERATED_BEGIN)[0]
    assert "| `added` | `string` | **required** | New. |" in updated
    new = (tree / "roles/newrole/README.md").read_text()
    assert "A role added in another branch" in new and "| `newrole_port` | int | `1` | Port. |" in new
    new_module = (tree / "terraform/modules/new_module/README.md").read_text()
    assert "| `peer_vpc_id` | `string` | **required** |  |" in new_module
    assert "No stack calls it yet" in new_module
