"""What the window shows of the runtime's states in its banners: errors and retries with every
field named by its label ("Password / API key", not "field 'secret'"), and for a model whose
datasource's secret is missing from the keyring, an "Enter password…" button that opens the
datasource's dialog and starts the model again once it is saved."""

from __future__ import annotations

from collections.abc import Callable

from eventdesk.core.contracts import State, StateChange
from eventdesk.core.errors import EventDeskError
from eventdesk.core.workspace import Workspace
from eventdesk.ui.dialog_guidance import label_fields
from eventdesk.ui.notifications import NotificationArea

# How the secret store says a keyring secret is missing (eventdesk/core/secrets.py); a test
# (tests/ui/test_desk_banners.py) makes one go missing for real, so a changed wording is caught.
MISSING_SECRET = "no secret stored in the keyring"  # noqa: S105 - words of a message, not a secret


class StateBanners:
    """``StateBanners(notifications, workspace, enter_secret)``: :meth:`show` one state change."""

    def __init__(
        self,
        notifications: NotificationArea,
        workspace: Callable[[], Workspace],
        enter_secret: Callable[[str, str], None],
    ) -> None:
        self.notifications = notifications
        self.workspace = workspace
        self.enter_secret = enter_secret  # (datasource, model)

    def show(self, key: str, change: StateChange) -> None:
        kind, _, name = key.partition("/")
        ws = self.workspace()
        detail = label_fields(change.detail, ws) if change.detail else None
        if change.state is State.ERROR:
            first = (detail or "failed").splitlines()[0]
            banner = self.notifications.notify("error", f"{kind} {name}: {first}", detail, key=key)
            datasource = self._missing_secret_of(kind, name, change.detail or "", ws)
            if datasource is not None:
                banner.add_action(
                    "enter_secret", "Enter password…", lambda: self.enter_secret(datasource, name)
                )
        elif change.state is State.RETRYING:
            when = f" (next try in {change.retry_in:.0f} s)" if change.retry_in else ""
            self.notifications.notify("warning", f"{kind} {name} is retrying{when}", detail, key=key)
        elif change.state is State.RUNNING:
            self.notifications.dismiss_key(key)

    @staticmethod
    def _missing_secret_of(kind: str, name: str, detail: str, ws: Workspace) -> str | None:
        """The datasource of model ``name`` when ``detail`` says its keyring secret is missing."""
        if kind != "model" or MISSING_SECRET not in detail or "field 'secret'" not in detail:
            return None
        try:
            return ws.model(name).datasource
        except EventDeskError:  # removed meanwhile
            return None
