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
