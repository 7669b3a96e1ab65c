"""Turn the icon sources in ``resources/icons/`` into what the app and the desktop need.

    python packaging/build_icons.py            # write everything below
    python packaging/build_icons.py --check    # exit 1 if anything is missing or stale
    python packaging/build_icons.py --preview sheet.png   # every icon at 16, 24 and 32 px

``resources/icons/*.svg`` are the only hand-edited files (the single source of truth). From
them this script writes, and the results are committed:

- ``eventdesk/ui/icon_files/``: byte-identical copies of the SVGs, shipped as package data so a
  pip install and a PyInstaller bundle find them next to ``eventdesk/ui/icons.py``
  (setuptools cannot package files outside the package directory);
- ``resources/icons/hicolor/<N>x<N>/apps/eventdesk.png`` for N in 16…512, and
  ``hicolor/scalable/apps/eventdesk.svg``: the freedesktop icon theme layout that
  ``make install-desktop`` copies to ``~/.local/share/icons/hicolor``.

PNGs are rendered with Qt's own QSvgRenderer (PySide6-Essentials ships QtSvg), so no
other tool is needed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "resources" / "icons"
PACKAGE_COPY = ROOT / "eventdesk" / "ui" / "icon_files"
HICOLOR = SOURCE / "hicolor"
APP_ICON = "eventdesk"
APP_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)


def sources() -> list[Path]:
    """Every SVG source, relative to ``resources/icons`` (the hicolor output excluded)."""
    return sorted(p.relative_to(SOURCE) for p in SOURCE.rglob("*.svg") if HICOLOR not in p.parents)


def render(svg: Path, size: int) -> QImage:
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg}: not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    return image


def app_png(size: int) -> Path:
    return HICOLOR / f"{size}x{size}" / "apps" / f"{APP_ICON}.png"


def planned() -> list[tuple[Path, Path | int]]:
    """(target, source file or PNG size) for every generated file."""
    out: list[tuple[Path, Path | int]] = [(PACKAGE_COPY / rel, SOURCE / rel) for rel in sources()]
    out.append((HICOLOR / "scalable" / "apps" / f"{APP_ICON}.svg", SOURCE / f"{APP_ICON}.svg"))
    out += [(app_png(size), size) for size in APP_SIZES]
    return out


def stale() -> list[str]:
    """What ``build`` would change: missing files, differing copies, wrong PNG sizes, strays."""
    problems = []
    for target, origin in planned():
        if not target.exists():
            problems.append(f"missing {target.relative_to(ROOT)}")
        elif isinstance(origin, Path):
            if target.read_bytes() != origin.read_bytes():
                problems.append(f"{target.relative_to(ROOT)} differs from {origin.relative_to(ROOT)}")
        else:
            image = QImage(str(target))
            if image.width() != origin or image.height() != origin:
                problems.append(f"{target.relative_to(ROOT)} is not {origin}x{origin}")
    expected = {target for target, _ in planned()}
    problems += [
        f"stray {p.relative_to(ROOT)} (its source is gone)"
        for p in PACKAGE_COPY.rglob("*.svg")
        if p not in expected
    ]
    return problems


def build() -> None:
    if PACKAGE_COPY.exists():
        for stray in PACKAGE_COPY.rglob("*.svg"):
            stray.unlink()
    for target, origin in planned():
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(origin, Path):
            shutil.copyfile(origin, target)
        elif not render(SOURCE / f"{APP_ICON}.svg", origin).save(str(target), "PNG"):
            raise SystemExit(f"could not write {target}")
        print(f"wrote {target.relative_to(ROOT)}")


def preview(output: Path) -> None:
    """A contact sheet: each icon at 16, 24 and 32 px, on light and dark backgrounds."""
    svgs = [SOURCE / rel for rel in sources()]
    sizes = (16, 24, 32)
    cell = 40
    sheet = QImage(cell * len(sizes) * 2, cell * len(svgs), QImage.Format.Format_ARGB32)
    sheet.fill(QColor("#ffffff"))
    painter = QPainter(sheet)
    painter.fillRect(cell * len(sizes), 0, cell * len(sizes), sheet.height(), QColor("#2b2b2b"))
    for row, svg in enumerate(svgs):
        for dark in (0, 1):
            for col, size in enumerate(sizes):
                x = (dark * len(sizes) + col) * cell + (cell - size) // 2
                painter.drawImage(x, row * cell + (cell - size) // 2, render(svg, size))
    painter.end()
    sheet.save(str(output))
    print(f"saved {output}: rows {', '.join(p.stem for p in svgs)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report missing or stale files")
    parser.add_argument("--preview", metavar="PNG", help="save a contact sheet of every icon")
    args = parser.parse_args()
    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    if args.preview:
        preview(Path(args.preview))
        return 0
    if args.check:
        problems = stale()
        for line in problems:
            print(line)
        return 1 if problems else 0
    build()
    return 0


if __name__ == "__main__":
    sys.exit(main())
