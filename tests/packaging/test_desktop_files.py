"""The freedesktop entry and AppStream metainfo validate, agree with each other, and install
per user with ``make install-desktop`` (and go away with ``make uninstall-desktop``)."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from tests.peers.servers import missing_peer

ROOT = Path(__file__).resolve().parents[2]
DESKTOP = ROOT / "resources" / "eventdesk.desktop"
METAINFO = ROOT / "resources" / "io.github.eventdesk.EventDesk.metainfo.xml"
HICOLOR = ROOT / "resources" / "icons" / "hicolor"
APP_SVG = ROOT / "eventdesk" / "ui" / "icon_files" / "eventdesk.svg"
ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing_peer(name, f"apt-get install {package}")
    assert path is not None
    return path


def _desktop_entry(path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path, encoding="utf-8")
    return parser["Desktop Entry"]


def _validate_desktop(path: Path) -> None:
    result = subprocess.run(
        [_tool("desktop-file-validate", "desktop-file-utils"), str(path)], capture_output=True, text=True
    )
    # desktop-file-validate exits 0 on hints too; any output is a finding worth fixing.
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_desktop_entry_validates() -> None:
    _validate_desktop(DESKTOP)


def test_metainfo_validates() -> None:
    result = subprocess.run(
        [_tool("appstreamcli", "appstream"), "validate", "--no-net", str(METAINFO)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "warning" not in result.stdout.lower() and "error" not in result.stdout.lower(), result.stdout


def test_entry_metainfo_and_icons_agree() -> None:
    entry = _desktop_entry(DESKTOP)
    component = ET.parse(METAINFO).getroot()  # noqa: S314 - our own committed file
    assert component.findtext("launchable") == DESKTOP.name
    assert component.findtext("provides/binary") == entry["Exec"].split()[0]
    assert component.findtext("name") == entry["Name"]
    icon = entry["Icon"]
    for size in ICON_SIZES:
        assert (HICOLOR / f"{size}x{size}" / "apps" / f"{icon}.png").is_file(), size
    assert APP_SVG.stem == icon


def test_make_install_and_uninstall_desktop(tmp_path: Path) -> None:
    data = tmp_path / "share"
    exe = Path(sys.executable).with_name("eventdesk")
    assert exe.is_file(), f"{exe}: the venv has no eventdesk command (pip install -e .)"
    args = [_tool("make", "make"), "-s", "-C", str(ROOT), f"XDG_DATA_HOME={data}", f"EVENTDESK_EXEC={exe}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    installed = subprocess.run([*args, "install-desktop"], capture_output=True, text=True, env=env)
    assert installed.returncode == 0, installed.stderr
    desktop = data / "applications" / "eventdesk.desktop"
    _validate_desktop(desktop)
    entry = _desktop_entry(desktop)
    assert entry["Exec"] == f'"{exe}"' and entry["TryExec"] == str(exe)
    assert (data / "metainfo" / METAINFO.name).read_bytes() == METAINFO.read_bytes()
    for size in ICON_SIZES:
        installed_png = data / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "eventdesk.png"
        assert (
            installed_png.read_bytes() == (HICOLOR / f"{size}x{size}" / "apps" / "eventdesk.png").read_bytes()
        )
    assert (
        data / "icons" / "hicolor" / "scalable" / "apps" / "eventdesk.svg"
    ).read_bytes() == APP_SVG.read_bytes()

    removed = subprocess.run([*args, "uninstall-desktop"], capture_output=True, text=True, env=env)
    assert removed.returncode == 0, removed.stderr
    left = [p for p in data.rglob("eventdesk*") if p.is_file()] + list(data.rglob("*.metainfo.xml"))
    assert left == []
