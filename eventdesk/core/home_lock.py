"""One writer per EventDesk home: an OS file lock held for the life of a runner, the app or an edit.

``eventdesk run``, the desktop app and the editing commands take :class:`HomeLock` on the
home's lock file (``flock``, released by the OS when the process ends, even on SIGKILL). The
holder writes what it is into the file (PID, ``run``/``app``/..., since when), so a refused
second writer can name it and ``status`` can tell a live runner from one that died.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from eventdesk.core.envelope import utc_now_iso
from eventdesk.core.errors import DiskFullError, HomeInUseError

LOCK_FILE_MODE = 0o600
# A reader (`status`) holds a shared lock for a few microseconds to test the file; a writer
# that meets one tries again for this long before it calls the home busy.
_ACQUIRE_PATIENCE_S = 0.5
_ACQUIRE_STEP_S = 0.02

HOLDER_LABELS = {
    "run": "`eventdesk run`",
    "app": "the EventDesk app",
    "edit": "an editing command",
}


@dataclass(frozen=True)
class Holder:
    """Who holds a home: its PID (None if it had not written it yet), what it is, since when."""

    pid: int | None
    what: str
    since: str | None

    def describe(self) -> str:
        label = HOLDER_LABELS.get(self.what, self.what or "another EventDesk process")
        pid = f"PID {self.pid}" if self.pid is not None else "PID unknown"
        since = f", since {self.since}" if self.since else ""
        return f"{label} ({pid}{since})"

    @classmethod
    def parse(cls, text: str) -> Holder:
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return cls(None, "", None)
        pid = data.get("pid")
        since = data.get("since")
        return cls(
            pid if isinstance(pid, int) else None,
            str(data.get("what") or ""),
            since if isinstance(since, str) else None,
        )


def _open(path: Path, flags: int) -> int:
    fd = os.open(path, flags | os.O_CLOEXEC, LOCK_FILE_MODE)
    with contextlib.suppress(OSError):  # a lock file made by another user stays theirs
        os.fchmod(fd, LOCK_FILE_MODE)
    return fd


def _read(fd: int) -> Holder:
    os.lseek(fd, 0, os.SEEK_SET)
    return Holder.parse(os.read(fd, 4096).decode("utf-8", "replace"))


def holder(path: Path) -> Holder | None:
    """Who holds the lock at ``path`` now, or None if nobody does (the last holder ended)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, PermissionError):  # no holder yet, or another user's home
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def refusal(current: Holder, home: str, what: str) -> str:
    """Why ``what`` may not take a home that ``current`` holds, and what to do."""
    text = f"this home ({home}) is in use by {current.describe()}"
    if what == "run":
        first = "close it" if current.what == "app" else "stop it"
        return text + (
            f"; a second runner would publish every event twice: {first} first (or give this runner another --home)"
        )
    if what == "app":
        return text  # the app then opens it read only, and says so
    if current.what == "run":
        return text + (", which does not reload the workspace: stop it, make the change, then start it again")
    return text + "; close it, then make the change"


class HomeLock:
    """The exclusive lock of one home, held from :meth:`acquire` until :meth:`release` (or the
    process's end)."""

    def __init__(self, path: Path, fd: int, what: str) -> None:
        self.path = path
        self.what = what
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: Path, what: str, *, home: str | None = None) -> HomeLock:
        """Take the lock for ``what`` (``run``, ``app``, ``edit``) or raise :class:`HomeInUseError`
        naming the holder."""
        fd = _open(path, os.O_RDWR | os.O_CREAT)
        deadline = time.monotonic() + _ACQUIRE_PATIENCE_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(_ACQUIRE_STEP_S)  # perhaps a reader testing the lock
                    continue
                current = _read(fd)
                os.close(fd)
                raise HomeInUseError(
                    refusal(current, home or str(path.parent), what), pid=current.pid
                ) from None
        info = {"pid": os.getpid(), "what": what, "since": utc_now_iso()}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        except OSError as exc:
            os.close(fd)
            if exc.errno == errno.ENOSPC:
                raise DiskFullError(str(path)) from None
            raise
        return cls(path, fd, what)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # no stale PID for a reader to name
        os.close(fd)  # closing the only descriptor releases the flock
