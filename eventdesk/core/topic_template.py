"""Topic templates: ``eventdesk/{datasource}/{model}/{op}`` and friends.

A value put into a topic never changes the topic's shape: it is percent-encoded so that it
stays one level and cannot name a wildcard or a ``$`` topic (``%`` -> ``%25``, ``/`` ->
``%2F``, ``+`` -> ``%2B``, ``#`` -> ``%23``, NUL -> ``%00``, a leading ``$`` -> ``%24``; an
empty value becomes ``_``). ``urllib.parse.unquote`` gives the value back. ``{key:levels}``
lets a value span levels: its ``/`` stay, empty levels become ``_``, the rest is escaped alike.

A NATS subject (``separator="."``, the ``nats`` broker kind) is escaped the same way and also
percent-encodes what NATS gives a meaning to: ``.`` (the token separator) -> ``%2E``, ``*`` ->
``%2A``, ``>`` -> ``%3E`` and every whitespace or control character (``%20``, ``%09``, ...), so a
value stays one token and no document can add a token or a wildcard; ``{key:levels}`` turns a
value's ``/`` into ``.`` tokens there.
"""

from __future__ import annotations

import operator
import string
from collections.abc import Callable
from typing import Any

PLACEHOLDERS = ("datasource", "model", "op", "key")
DEFAULT_TOPIC = "eventdesk/{datasource}/{model}/{op}"
LEVELS = "levels"  # the one format spec: {key:levels} keeps the value's '/' as topic levels
ESCAPING_HELP = (
    "Values are escaped to stay one level: % / + # NUL and a leading $ become %25 %2F %2B %23 %00 %24; "
    "{key:levels} keeps a value's / as levels."
)
_SAMPLE = {"datasource": "ds", "model": "m", "op": "created", "key": "k"}


def placeholders(template: str) -> list[str]:
    """Return the placeholder names in ``template``; raise ValueError if malformed."""
    return [name for name, _ in _fields(template)]


def _fields(template: str) -> list[tuple[str, bool]]:
    """``(name, levels)`` of each placeholder in ``template``; raise ValueError if malformed."""
    fields = []
    for _, name, spec, conv in string.Formatter().parse(template):
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            raise ValueError(
                f"unknown placeholder {{{name}}}; use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
            )
        if conv or spec not in ("", LEVELS):
            raise ValueError(f"placeholder {{{name}}} takes no format spec but :{LEVELS}")
        fields.append((name, spec == LEVELS))
    return fields


def check_template(template: str, validate_topic: Callable[[str], str | None]) -> str | None:
    """Return why ``template`` would produce an invalid publish topic, or None."""
    if not template:
        return "the topic template is empty"
    try:
        TopicTemplate(template)
    except ValueError as exc:
        return str(exc)
    return validate_topic(TopicTemplate(template).render(_SAMPLE))


def escape_value(value: Any) -> str:
    """``value`` as one topic level (see the module docstring); cheap when there is nothing to do."""
    text = value if type(value) is str else str(value)
    # Scans, much cheaper than the replaces: most values need none.
    if "/" in text or "%" in text or "+" in text or "#" in text or "\x00" in text:
        text = (
            text.replace("%", "%25")
            .replace("/", "%2F")
            .replace("+", "%2B")
            .replace("#", "%23")
            .replace("\x00", "%00")
        )
    elif not text:
        return "_"
    if text[0] == "$":
        text = "%24" + text[1:]
    return text


def _nats_special(text: str) -> bool:
    return any(c in ".*>%/+#\x00" or c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def escape_token(value: Any) -> str:
    """``value`` as one NATS subject token: :func:`escape_value`, plus ``.``, ``*``, ``>``,
    whitespace and control characters percent-encoded (the module docstring)."""
    text = value if type(value) is str else str(value)
    if not text:
        return "_"
    if _nats_special(text):
        text = "".join(
            f"%{ord(c):02X}" if c in ".*>%/+#" or c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F else c
            for c in text
        )
    if text[0] == "$":
        text = "%24" + text[1:]
    return text


def escape_tokens(value: Any) -> str:
    """``value`` as one or more NATS subject tokens: its ``/`` become ``.``, the rest as :func:`escape_token`."""
    text = value if type(value) is str else str(value)
    return ".".join([escape_token(level) for level in text.split("/")])


def escape_levels(value: Any) -> str:
    """``value`` as one or more topic levels: its ``/`` stay, everything else as :func:`escape_value`."""
    text = value if type(value) is str else str(value)
    return "/".join([escape_value(level) for level in text.split("/")])


class TopicTemplate:
    """A checked template; :meth:`render` is on the publish path, so it is cheap."""

    def __init__(self, template: str, separator: str = "/") -> None:
        """``separator``: ``/`` for MQTT topics, ``.`` for NATS subjects (the publisher's
        ``topic_separator``), which escape values differently (the module docstring)."""
        self.template = template
        self.separator = separator
        nats = separator == "."
        fields = _fields(template)
        self._static = not fields
        # For render_fields: the template as a %-format, and which of the four values fill it how.
        self._format = "".join(
            literal.replace("%", "%%") + ("%s" if name is not None else "")
            for literal, name, _, _ in string.Formatter().parse(template)
        )
        self._order = tuple(
            (
                PLACEHOLDERS.index(name),
                (escape_tokens if levels else escape_token)
                if nats
                else (escape_levels if levels else escape_value),
            )
            for name, levels in fields
        )
        # The fast path, when no value needs escaping: the values the template takes (one value,
        # or a tuple of them), scanned at once.
        self._pick = operator.itemgetter(*(i for i, _ in self._order)) if fields else None
        self._one = len(fields) == 1
        # NATS subjects always take the long way (the fast path's scan is MQTT's).
        self._plain = not nats and not any(levels for _, levels in fields)

    def render(self, envelope: dict[str, Any]) -> str:
        if self._static:
            return self.template
        get = envelope.get
        return self.render_fields(get("datasource", ""), get("model", ""), get("op", ""), get("key", ""))

    def render_fields(self, datasource: str, model: str, op: str, key: str) -> str:
        """:meth:`render` from the four values themselves (a route's hot path: no dict)."""
        if self._static:
            return self.template
        values = (datasource, model, op, key)
        if self._plain and self._pick is not None:
            # One scan of all the values at once: nearly every topic needs no escaping.
            picked = self._pick(values)  # the one value, or a tuple of them
            try:
                joined = picked if self._one else "".join(picked)
                clean = bool(joined) and not (
                    "/" in joined
                    or "%" in joined
                    or "+" in joined
                    or "#" in joined
                    or "$" in joined
                    or "\x00" in joined
                )
            except TypeError:  # a value that is not a str: the long way
                clean = False
            if clean and (self._one or "" not in picked):
                topic: str = self._format % picked
                return topic
        return self._format % tuple([escape(values[i]) for i, escape in self._order])
