"""What the object dialogs show to guide a user, beyond the kinds' schemas: words for stored
choice values, URL placeholders that follow the kind, field labels in error messages, and the
route formats with an example payload each.

Pure data and functions (plus one label widget), so the dialogs stay about layout and flow.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

from eventdesk.core.errors import EventDeskError
from eventdesk.core.settings_schema import Schema

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
}

# One line each: what a route publishes for a change of document {"_id": "acc-42", "balance": 10}.
FORMAT_EXAMPLES: tuple[tuple[str, str, str], ...] = (
    (
        "envelope",
        "the whole event",
        '{"id": "01J…", "datasource": "ds", "model": "accounts", "op": "updated", "key": "acc-42", '
        '"rev": "2-…", "payload": {"_id": "acc-42", "balance": 10}, …}',
    ),
    (
        "model-message",
        "the model and the document",
        '{"model": "accounts", "message": {"_id": "acc-42", "balance": 10}}',
    ),
    ("payload", "the document alone", '{"_id": "acc-42", "balance": 10}'),
)


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
