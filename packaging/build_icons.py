"""Render the desktop's PNG app icons from the one copy of the SVGs, ``eventdesk/ui/icon_files/``.

    python packaging/build_icons.py            # write the PNGs below
    python packaging/build_icons.py --check    # exit 1 if a PNG is missing or not what it renders to
    python packaging/build_icons.py --preview sheet.png   # every icon at 16, 24 and 32 px

``eventdesk/ui/icon_files/**/*.svg`` are the only hand-edited icon files (the single source of
truth): package data that a pip install and a PyInstaller bundle load next to
``eventdesk/ui/icons.py``, and what ``make install-desktop`` installs as the scalable app icon.
From ``eventdesk.svg`` this script writes ``resources/icons/hicolor/<N>x<N>/apps/eventdesk.png``
for N in 16…512 (committed, so installing the menu entry needs no Qt), the freedesktop icon
theme layout that ``make install-desktop`` copies to ``~/.local/share/icons/hicolor``.

PNGs are rendered with Qt's own QSvgRenderer (PySide6-Essentials ships QtSvg), so no
other tool is needed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QRectF, Qt
from PySide6.QtGui import QColor, QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "eventdesk" / "ui" / "icon_files"
HICOLOR = ROOT / "resources" / "icons" / "hicolor"
APP_ICON = "eventdesk"
APP_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)


def sources() -> list[Path]:
    """Every SVG, relative to ``eventdesk/ui/icon_files``."""
    return sorted(p.relative_to(SOURCE) for p in SOURCE.rglob("*.svg"))


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


def as_saved(image: QImage) -> QImage:
    """``image`` as it reads back from a PNG (which stores alpha unpremultiplied)."""
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    buffer.close()
    return QImage.fromData(data, "PNG")


def pixels(image: QImage) -> numpy.ndarray:
    image = image.convertToFormat(QImage.Format.Format_ARGB32)
    return numpy.frombuffer(image.constBits(), numpy.uint8).reshape(image.height(), image.bytesPerLine())


def looks_the_same(one: QImage, other: QImage) -> bool:
    """Same size, no channel of any pixel more than 2 apart (Qt releases round antialiasing a
    little differently)."""
    if one.size() != other.size():
        return False
    return int(numpy.abs(pixels(one).astype(int) - pixels(other).astype(int)).max()) <= 2


def app_png(size: int) -> Path:
    return HICOLOR / f"{size}x{size}" / "apps" / f"{APP_ICON}.png"


def stale() -> list[str]:
    """What ``build`` would change: missing PNGs, PNGs that are not what the SVG renders to, and
    any other file in the hicolor tree (the scalable icon is installed from the package's SVG)."""
    problems = []
    for size in APP_SIZES:
        target = app_png(size)
        if not target.exists():
            problems.append(f"missing {target.relative_to(ROOT)}")
            continue
        if not looks_the_same(QImage(str(target)), as_saved(render(SOURCE / f"{APP_ICON}.svg", size))):
            problems.append(f"{target.relative_to(ROOT)} is not {APP_ICON}.svg at {size}x{size}")
    wanted = {app_png(size) for size in APP_SIZES}
    problems += [
        f"stray {p.relative_to(ROOT)} (not written by this script)"
        for p in HICOLOR.rglob("*")
        if p.is_file() and p not in wanted
    ]
    return problems


def build() -> None:
    for stray in HICOLOR.rglob("*"):
        if stray.is_file():
            stray.unlink()
    for size in APP_SIZES:
        target = app_png(size)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not render(SOURCE / f"{APP_ICON}.svg", size).save(str(target), "PNG"):
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
