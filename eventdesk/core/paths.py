"""Where EventDesk keeps its workspace file and capture database.

Resolution order: an explicit ``--home DIR``, then ``EVENTDESK_HOME``, then the platform's
config and data directories (platformdirs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "eventdesk"
HOME_ENV = "EVENTDESK_HOME"


@dataclass(frozen=True)
class Paths:
    """The files of one EventDesk home."""

    config_dir: Path
    data_dir: Path

    @property
    def workspace_file(self) -> Path:
        return self.config_dir / "workspace.json"

    @property
    def capture_file(self) -> Path:
        return self.data_dir / "capture.sqlite3"

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    def ensure(self) -> Paths:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self


def resolve_paths(home: str | os.PathLike[str] | None = None) -> Paths:
    """Return the paths for ``home``, the environment override, or the platform default."""
    chosen = home if home is not None else os.environ.get(HOME_ENV) or None
    if chosen is not None:
        root = Path(chosen).expanduser().resolve()
        return Paths(config_dir=root, data_dir=root)
    return Paths(
        config_dir=Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
        data_dir=Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)),
    )
