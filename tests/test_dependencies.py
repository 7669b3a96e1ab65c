"""Every library the package imports is one it declares (issue 13: no dependency by accident).

A module imported only because another dependency happens to pull it in today can vanish with
that dependency's next release; pyproject.toml must name each one itself.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_top_level_modules() -> dict[str, str]:
    """Third-party top-level module -> one file importing it."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "eventdesk").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top != "eventdesk" and top not in sys.stdlib_module_names:
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return {normalise(re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0]) for req in requirements}


def test_every_imported_library_is_a_declared_dependency() -> None:
    declared = declared_distributions()
    owners = importlib.metadata.packages_distributions()
    undeclared = {}
    for module, where in imported_top_level_modules().items():
        distributions = {normalise(d) for d in owners.get(module, [module])}
        if not distributions & declared:
            undeclared[module] = (sorted(distributions), where)
    assert undeclared == {}, f"imported but not declared in pyproject.toml: {undeclared}"


def test_the_check_sees_the_libraries_it_must() -> None:
    modules = imported_top_level_modules()
    assert {"paho", "ibmcloudant", "requests", "urllib3", "PySide6"} <= set(modules)
