"""The documentation lives in the repository: README, docs/ and docstrings point only at files in
it, the sections docstrings name exist, and docs/performance.md covers every benchmark."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
_LINK = re.compile(r"\]\(([^)\s]+)\)")
# A docstring or comment pointing at a section: docs/NAME.md, "Section heading"
_SECTION_REF = re.compile(r"(docs/[\w-]+\.md), \"([^\"]+)\"")


def _texts() -> dict[Path, str]:
    files = [ROOT / "README.md", *DOCS.glob("*.md"), *(ROOT / "eventdesk").rglob("*.py")]
    return {path: path.read_text(encoding="utf-8") for path in files}


def _headings(doc: Path) -> set[str]:
    lines = doc.read_text(encoding="utf-8").splitlines()
    return {line.lstrip("#").strip().replace("`", "") for line in lines if line.startswith("#")}


def test_nothing_refers_to_a_design_file_outside_the_repository() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path, text in _texts().items()
        for number, line in enumerate(text.splitlines(), 1)
        if "shared/" in line or "DESIGN.md" in line
    ]
    assert found == []


def test_the_architecture_and_performance_pages_exist_and_readme_links_them() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in ("architecture.md", "performance.md", "guarantees.md"):
        assert f"](docs/{name})" in readme, name
    assert (DOCS / "architecture.md").is_file() and (DOCS / "performance.md").is_file()


def test_markdown_links_stay_inside_the_repository() -> None:
    for path in [ROOT / "README.md", *DOCS.glob("*.md")]:
        for target in _LINK.findall(path.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue  # a web address or an anchor on the same page
            resolved = (path.parent / target.split("#")[0]).resolve()
            assert resolved.is_relative_to(ROOT), f"{path.relative_to(ROOT)} links outside: {target}"


def test_sections_named_in_docstrings_exist() -> None:
    refs = [
        (path, doc, section)
        for path, text in _texts().items()
        if path.suffix == ".py"
        for doc, section in _SECTION_REF.findall(" ".join(text.split()))
    ]
    assert refs, "the modules point at no section of docs/ any more: is this test still needed?"
    for path, doc, section in refs:
        assert section in _headings(ROOT / doc), f"{path.relative_to(ROOT)} names {doc}, {section!r}"


def test_performance_page_describes_every_benchmark() -> None:
    page = (DOCS / "performance.md").read_text(encoding="utf-8")
    benchmarks = sorted(p.stem for p in (ROOT / "tests" / "bench").glob("*.py") if p.stem != "__init__")
    assert benchmarks
    missing = [name for name in benchmarks if f"`tests.bench.{name}`" not in page]
    assert missing == []
