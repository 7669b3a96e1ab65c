"""Icons: each SVG exists once, the desktop PNGs match it, and every icon the UI asks for renders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtGui import QColor, QImage, QPalette
from PySide6.QtWidgets import QApplication

from eventdesk.core.contracts import State
from eventdesk.ui import icons

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.gui


def test_every_svg_icon_exists_once_in_the_package() -> None:
    """eventdesk/ui/icon_files is the one copy the app, the bundle and install-desktop use."""
    assert sorted(p.relative_to(ROOT) for p in (ROOT / "resources").rglob("*.svg")) == []
    names = [icons.APP_ICON, *icons.ACTIONS, *(s.value for s in State)]
    shipped = sorted((ROOT / "eventdesk" / "ui" / "icon_files").rglob("*.svg"))
    assert shipped == sorted(icons.icon_path(name) for name in names)


def test_generated_icons_are_up_to_date() -> None:
    """The desktop PNGs are rendered from eventdesk/ui/icon_files/eventdesk.svg: run `make icons`
    after editing it."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "packaging" / "build_icons.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, "stale icons (run `make icons`):\n" + result.stdout + result.stderr


def _opaque_pixels(image: QImage) -> int:
    return sum(
        1 for x in range(image.width()) for y in range(image.height()) if image.pixelColor(x, y).alpha()
    )


@pytest.mark.parametrize("name", icons.ACTIONS)
def test_action_icons_render_at_16_px(qapp: QApplication, name: str) -> None:
    image = icons.icon(name).pixmap(16, 16).toImage()
    assert image.width() == 16
    assert _opaque_pixels(image) > 16  # a visible glyph, not a speck or nothing


@pytest.mark.parametrize("state", list(State))
def test_state_icons_differ_per_state(qapp: QApplication, state: State) -> None:
    image = icons.state_icon(state).pixmap(16, 16).toImage()
    others = [icons.state_icon(s).pixmap(16, 16).toImage() for s in State if s is not state]
    assert _opaque_pixels(image) > 64
    assert all(image != other for other in others)


def test_app_icon_has_menu_and_dock_sizes(qapp: QApplication) -> None:
    sizes = {(s.width(), s.height()) for s in icons.app_icon().availableSizes()}
    assert {(16, 16), (32, 32), (48, 48), (256, 256)} <= sizes
    assert not icons.missing_icons()


def test_unknown_icon_names_fail_loudly() -> None:
    with pytest.raises(KeyError, match="add-datasorce"):
        icons.icon("add-datasorce")


def test_glyphs_turn_light_on_a_dark_palette(qapp: QApplication) -> None:
    original = qapp.palette()
    try:
        dark = QPalette(original)
        dark.setColor(QPalette.ColorRole.Window, QColor("#202020"))
        qapp.setPalette(dark)
        on_dark = icons.icon("pause").pixmap(16, 16).toImage()
        light = QPalette(original)
        light.setColor(QPalette.ColorRole.Window, QColor("#f0f0f0"))
        qapp.setPalette(light)
        on_light = icons.icon("pause").pixmap(16, 16).toImage()
    finally:
        qapp.setPalette(original)
    centre_dark, centre_light = on_dark.pixelColor(5, 8), on_light.pixelColor(5, 8)
    assert centre_dark.lightness() > 150 > centre_light.lightness()


def test_bundle_finds_icons_under_meipass(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert icons.icon_dir() == tmp_path / "eventdesk" / "ui" / "icon_files"
    assert icons.icon_path("start") == tmp_path / "eventdesk" / "ui" / "icon_files" / "actions" / "start.svg"
