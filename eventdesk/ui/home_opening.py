"""Opening a home for the app: at launch (``--home``, EVENTDESK_HOME or the platform's) and from
File ▸ New workspace / Open workspace, which choose another directory and switch the app to it.

The app takes the home's lock; on a home that ``eventdesk run`` holds it opens read only. A
capture that is missing, foreign or damaged is refused with the choice of a fresh one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from eventdesk.core.errors import CaptureUnusableError, ConfigError
from eventdesk.core.home import Home
from eventdesk.core.paths import resolve_paths

FRESH_CAPTURE_BUTTON = "Start with a fresh capture"


def open_home(
    home_dir: str | None, ask: Callable[[QMessageBox], object] | None = None, *, refuse: str = "Quit"
) -> Home | None:
    """Open the home for the app (read only if a runner holds it) and its capture; on an
    unusable capture ask (``ask`` shows the box, default ``exec``) whether to start a fresh one
    (or ``refuse``: quit at launch, cancel from the File menu). None: the user refused."""
    home = Home.open(home_dir, lock="app", read_only_if_held=True)
    try:
        home.capture  # noqa: B018 - opening it checks it
    except CaptureUnusableError as exc:
        box = QMessageBox(QMessageBox.Icon.Warning, "EventDesk: the capture cannot be used", exc.describe())
        box.setObjectName("capture_unusable")
        fresh = None
        if home.read_only is None:
            fresh = box.addButton(FRESH_CAPTURE_BUTTON, QMessageBox.ButtonRole.AcceptRole)
        box.addButton(refuse, QMessageBox.ButtonRole.RejectRole)
        if ask is None:
            box.exec()
        else:
            ask(box)
        if fresh is None or box.clickedButton() is not fresh:
            home.close()
            return None
        home.start_fresh_capture()
    return home


def check_workspace_dir(directory: str, *, new: bool, current: Home) -> Path:
    """The resolved ``directory`` if a workspace can be opened there (``new``: one made there);
    else a :class:`ConfigError` naming the directory and what is wrong."""
    paths = resolve_paths(directory)
    root = paths.data_dir
    obj = f"workspace directory {str(root)!r}"
    if root == current.paths.data_dir:
        raise ConfigError("is the workspace open in this window", obj=obj)
    if root.exists() and not root.is_dir():
        raise ConfigError("is a file, not a directory", obj=obj)
    has_workspace = paths.workspace_file.exists()
    if new and has_workspace:
        raise ConfigError("already holds a workspace: use File ▸ Open workspace… to open it", obj=obj)
    if not new and not has_workspace:
        raise ConfigError(
            "holds no workspace (no workspace.json): use File ▸ New workspace… to start one there", obj=obj
        )
    return root


def open_workspace_dir(directory: str, *, new: bool, current: Home) -> Home | None:
    """The home in ``directory`` for File ▸ New workspace… (``new``: made there, its workspace
    file written) or Open workspace…; None: the user cancelled (its capture cannot be used).
    What is wrong with the directory is a :class:`ConfigError`."""
    root = check_workspace_dir(directory, new=new, current=current)
    try:
        other = open_home(str(root), refuse="Cancel")
    except OSError as exc:
        raise ConfigError(exc.strerror or str(exc), obj=f"workspace directory {str(root)!r}") from exc
    if other is not None and new:
        other.save()
    return other


def choose_workspace_dir(parent: QWidget, *, new: bool) -> str | None:
    """Ask for a directory (None: cancelled)."""
    title = "New workspace: choose an empty directory" if new else "Open workspace: choose its directory"
    chosen = QFileDialog.getExistingDirectory(parent, title)
    return chosen or None
