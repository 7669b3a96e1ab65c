"""EventDesk's error hierarchy: every error names the object and the field at fault.

Messages never contain secrets; callers pass only names, URLs without credentials and
server replies.
"""

from __future__ import annotations


class EventDeskError(Exception):
    """Base of every error EventDesk reports to a user."""

    exit_code = 1

    def __init__(self, message: str, *, obj: str | None = None, field: str | None = None) -> None:
        self.obj = obj
        self.field = field
        self.detail = message
        super().__init__(self.describe())

    def describe(self) -> str:
        where = ""
        if self.obj and self.field:
            where = f"{self.obj}: field '{self.field}': "
        elif self.obj:
            where = f"{self.obj}: "
        return where + self.detail


class ConfigError(EventDeskError):
    """Invalid workspace or settings value (bad URL, unknown kind, invalid topic template, ...)."""

    exit_code = 2


class NotFoundError(ConfigError):
    """A named datasource, model, broker or route does not exist."""

    exit_code = 3


class SecretStoreError(EventDeskError):
    """No usable keyring backend, or a secret reference that cannot be resolved."""

    exit_code = 4


class ConnectorError(EventDeskError):
    """A connector failed; ``terminal`` errors stop it, others are retried with backoff."""

    exit_code = 5

    def __init__(
        self,
        message: str,
        *,
        obj: str | None = None,
        field: str | None = None,
        terminal: bool = False,
        status: int | None = None,
    ) -> None:
        self.terminal = terminal
        self.status = status
        super().__init__(message, obj=obj, field=field)


class BrokerError(EventDeskError):
    """A broker could not be reached or refused us (authentication, TLS, ...)."""

    exit_code = 6

    def __init__(
        self, message: str, *, obj: str | None = None, field: str | None = None, terminal: bool = False
    ) -> None:
        self.terminal = terminal
        super().__init__(message, obj=obj, field=field)


class BrokerDisconnectedError(BrokerError):
    """The broker connection dropped while messages were in flight; they will be sent again."""


class BrokerNoAckError(BrokerDisconnectedError):
    """The connection is up but the broker did not acknowledge in time (a JetStream stream whose
    leader died, until its replicas elect another); the messages will be sent again. Unlike a
    drop it says nothing about the messages sent, so it never counts toward finding a poison."""


class OutputError(EventDeskError):
    """A file could not be written (disk full, I/O error); nothing half-written is left behind."""

    exit_code = 9


class PoisonError(BrokerError):
    """One message its broker can never take, however often it is sent: a topic that is invalid
    or too long after expansion, a payload over the broker's maximum, a refusal the broker reports
    as permanent. ``field`` is the message's part at fault (``topic`` or ``payload``); the route
    quarantines the event (or stops, with ``on_poison stop``) and goes on with the others."""

    def __init__(self, message: str, *, obj: str | None = None, field: str | None = None) -> None:
        super().__init__(message, obj=obj, field=field, terminal=True)


class JobCancelledError(EventDeskError):
    """A long job (export, import, replay) was cancelled by the user; it left nothing half-done."""

    exit_code = 130


class HomeInUseError(EventDeskError):
    """Another process (``eventdesk run``, the app, an edit) holds the home's lock."""

    exit_code = 7

    def __init__(self, message: str, *, pid: int | None = None) -> None:
        self.pid = pid
        super().__init__(message)


class DiskFullError(EventDeskError):
    """The disk holding the capture or the workspace is full; nothing committed is lost."""

    exit_code = 8

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"disk full at {path}; free some space, then run again (it resumes where it stopped)"
        )


class CaptureUnusableError(ConfigError):
    """The capture is missing, belongs to another workspace, or is not a readable database."""
