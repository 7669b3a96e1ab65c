"""Where EventDesk keeps its workspace file and capture database.

Resolution order: an explicit ``--home DIR``, then ``EVENTDESK_HOME``, then the platform's
config and data directories (platformdirs).

Everything in a home is private to its user: the directories are 0700 and the files (the
capture holds whole documents) 0600, whatever the umask; :meth:`Paths.ensure` also fixes the
modes of a home made by an older EventDesk.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "eventdesk"
HOME_ENV = "EVENTDESK_HOME"
DIR_MODE = 0o700
FILE_MODE = 0o600


def make_private(path: Path, mode: int = FILE_MODE) -> None:
    """Give ``path`` (if it exists and is ours) ``mode``."""
    try:
        if path.stat().st_mode & 0o777 != mode:
            path.chmod(mode)
    except (FileNotFoundError, PermissionError):
        pass


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
    def lock_file(self) -> Path:
        return self.data_dir / "eventdesk.lock"

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    def private_files(self) -> list[Path]:
        """The home's files that must be 0600 (the capture with its WAL files, the workspace
        with its backup, the lock file)."""
        capture = self.capture_file
        workspace = self.workspace_file
        return [
            capture,
            capture.with_name(capture.name + "-wal"),
            capture.with_name(capture.name + "-shm"),
            workspace,
            workspace.with_name(workspace.name + ".bak"),
            self.lock_file,
        ]

    def ensure(self) -> Paths:
        """Create the directories (0700) and make an existing home private."""
        for directory in (self.config_dir, self.data_dir):
            directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
            make_private(directory, DIR_MODE)
        for path in self.private_files():
            make_private(path)
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
