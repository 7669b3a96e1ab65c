"""Starting again, at launch, the models that were running when the app was closed: a setting
(Run ▸ Restart running models at launch), off by default, kept in the app's QSettings with the
names of the models that ran at the last close."""

from __future__ import annotations

from eventdesk.core.workspace import Workspace
from eventdesk.ui.window_layout import app_settings

GROUP = "session"
ENABLED = "restart_running_models"
RUNNING = "running_models"


def restart_enabled() -> bool:
    s = app_settings()
    return str(s.value(f"{GROUP}/{ENABLED}", "false")).lower() == "true"


def set_restart_enabled(enabled: bool) -> None:
    s = app_settings()
    s.setValue(f"{GROUP}/{ENABLED}", "true" if enabled else "false")
    s.sync()


def remember_running(models: list[str]) -> None:
    """Keep the names of the models running now (the app is closing)."""
    s = app_settings()
    s.setValue(f"{GROUP}/{RUNNING}", "\n".join(models))
    s.sync()


def models_to_restart(workspace: Workspace) -> list[str]:
    """The models to start at launch: those running at the last close that still exist, if the
    setting is on (else none)."""
    if not restart_enabled():
        return []
    names = str(app_settings().value(f"{GROUP}/{RUNNING}", "") or "").split("\n")
    return [n for n in names if n in workspace.models]
