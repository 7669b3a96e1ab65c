"""What the object dialogs show to guide a user, beyond the kinds' schemas: words for stored
choice values, URL placeholders that follow the kind, field labels in error messages, and the
route formats with an example payload each.

Pure data and functions (plus one label widget), so the dialogs stay about layout and flow.
"""

from __future__ import annotations

import re

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

from eventdesk.core.errors import EventDeskError
from eventdesk.core.registry import broker_class, connector_class
from eventdesk.core.settings_schema import Schema
from eventdesk.core.workspace import Workspace

# (field, stored value) -> what the form shows; the stored value is what is saved.
CHOICE_LABELS: dict[tuple[str, str], str] = {
    ("since", "now"): "From now",
    ("since", "0"): "From the beginning",
}

# The URL field's placeholder for each datasource or broker kind (a schema's help text else).
URL_PLACEHOLDERS: dict[str, str] = {
    "couchdb": "http://localhost:5984",
    "cloudant": "https://ACCOUNT.cloudantnosqldb.appdomain.cloud",
    "postgres": "postgresql://USER@HOST:5432/DATABASE",
    "nats": "nats://HOST:4222 (several, comma-separated, for a cluster)",
}

# One line each: what a route publishes for a change of document {"_id": "acc-42", "balance": 10}.
FORMAT_EXAMPLES: tuple[tuple[str, str, str], ...] = (
    (
        "envelope",
        "the whole event",
        '{"id": "01J…", "received_at": "…Z", "datasource": "couch", "model": "accounts", "op": "updated", '
        '"key": "acc-42", "rev": "2-…", "seq": "…", "payload": {"_id": "acc-42", "balance": 10}, "source": {…}}',
    ),
    (
        "model-message",
        "the model and the document",
        '{"model": "accounts", "message": {"_id": "acc-42", "balance": 10}}',
    ),
    ("payload", "the document alone", '{"_id": "acc-42", "balance": 10}'),
)


_OBJ = re.compile(r"(datasource|model|broker) '(.+)'")  # how errors name an object: EventDeskError.obj


def choice_label(field: str, value: str) -> str:
    return CHOICE_LABELS.get((field, value), value)


def field_label(schema: Schema | None, rows: dict[str, str], name: str) -> str:
    """The label a user sees for field ``name`` (a dialog row's title, or the schema's)."""
    if name in rows:
        return rows[name]
    if schema is not None:
        for f in schema.fields:
            if f.name == name:
                return f.title
    return name


def describe_with_labels(exc: BaseException, schema: Schema | None, rows: dict[str, str]) -> str | None:
    """``exc`` described with its field named by label ("Password / API key", not
    "field 'secret'"); None when it names no field (describe it as usual)."""
    if not isinstance(exc, EventDeskError) or not exc.field:
        return None
    label = field_label(schema, rows, exc.field)
    return f"{exc.obj}: {label}: {exc.detail}" if exc.obj else f"{label}: {exc.detail}"


def schema_of(workspace: Workspace, kind: str, name: str) -> Schema | None:
    """The settings schema of a saved datasource, model or broker (None if it has none)."""
    try:
        if kind == "datasource":
            return connector_class(workspace.datasource(name).kind).datasource_schema
        if kind == "model":
            model = workspace.model(name)
            return connector_class(workspace.datasource(model.datasource).kind).model_schema
        if kind == "broker":
            return broker_class(workspace.broker(name).kind).schema
    except EventDeskError:  # not saved, or of a kind not installed: fields keep their names
        return None
    return None


def reason_of(exc: EventDeskError, kind: str, name: str, workspace: Workspace) -> str:
    """Why ``kind name`` failed, in one line: the field by the label of the object at fault
    (a model's test may fail on its datasource), that object named only if it is another
    one ("URL: connection refused", "datasource 'couch': Password / API key: HTTP 401")."""
    own = exc.obj == f"{kind} {name!r}"
    if not exc.field:
        return exc.detail if own else exc.describe()
    at_fault = _OBJ.fullmatch(exc.obj or "")
    schema = schema_of(workspace, at_fault[1], at_fault[2]) if at_fault else None
    label = field_label(schema, {}, exc.field)
    return f"{label}: {exc.detail}" if own or not exc.obj else f"{exc.obj}: {label}: {exc.detail}"


def format_examples_label() -> QLabel:
    """The route dialog's explanation of the payload formats, one example line each."""
    lines = [
        f"<b>{name}</b>: {what}<br><code>{example.replace('<', '&lt;')}</code>"
        for name, what, example in FORMAT_EXAMPLES
    ]
    label = QLabel("<br>".join(lines))
    label.setObjectName("format_examples")
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    label.setStyleSheet("color: palette(dark);")
    return label


_FIELD_IN_TEXT = re.compile(r"(datasource|model|broker) '([^']+)': field '([^']+)'")


def label_fields(text: str, workspace: Workspace) -> str:
    """A runtime message (a state's detail: ``EventDeskError.describe()`` text) with each field
    named by its label: "datasource 'couch': field 'secret': …" becomes
    "datasource 'couch': Password / API key: …"."""

    def labelled(m: re.Match[str]) -> str:
        kind, name, field = m[1], m[2], m[3]
        return f"{kind} '{name}': {field_label(schema_of(workspace, kind, name), {}, field)}"

    return _FIELD_IN_TEXT.sub(labelled, text)
