"""How the package's modules depend on each other: no import circles in the core or the UI.

``make lint`` enforces it through import-linter's ``acyclic_siblings`` contracts; these tests
check the graph itself (imports under ``TYPE_CHECKING`` count: a circle in the types is still
one a reader has to untangle) and that the contracts stay configured.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKED = ("eventdesk.core", "eventdesk.ui")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("eventdesk", cache_dir=None)


def packages_under(graph: grimp.ImportGraph, package: str) -> list[str]:
    found = [package]
    for child in sorted(graph.find_children(package)):
        found += packages_under(graph, child)
    return found


@pytest.mark.parametrize("ancestor", CHECKED)
def test_no_import_circle_between_modules_of(graph: grimp.ImportGraph, ancestor: str) -> None:
    circles = {
        package: sorted(breakers)
        for package in packages_under(graph, ancestor)
        if (breakers := graph.nominate_cycle_breakers(package))
    }
    assert circles == {}, f"imports that close a circle, by package: {circles}"


def test_lint_imports_forbids_import_circles_in_the_core_and_the_ui() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    covered = {
        ancestor
        for contract in config["contracts"]
        if contract["type"] == "acyclic_siblings"
        for ancestor in contract["ancestors"]
    }
    assert set(CHECKED) <= covered


def test_only_the_paho_module_may_use_private_names_of_other_objects() -> None:
    lint = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    assert "SLF001" in lint["select"]
    allowed = sorted(
        path
        for path, ignored in lint["per-file-ignores"].items()
        if "SLF001" in ignored and path.startswith("eventdesk")
    )
    assert allowed == ["eventdesk/brokers/mqtt/paho_private.py"]


def test_no_module_in_the_package_is_over_600_lines_without_a_reason_at_its_top() -> None:
    long = {}
    for path in sorted((ROOT / "eventdesk").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = text.count("\n")
        if lines > 600 and "Over 600 lines because" not in text[:2000]:
            long[str(path.relative_to(ROOT))] = lines
    assert long == {}, f"split these, or say at the top why not ('Over 600 lines because ...'): {long}"
