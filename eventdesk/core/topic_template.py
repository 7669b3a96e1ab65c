"""Topic templates: ``eventdesk/{datasource}/{model}/{op}`` and friends."""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

PLACEHOLDERS = ("datasource", "model", "op", "key")
DEFAULT_TOPIC = "eventdesk/{datasource}/{model}/{op}"
_SAMPLE = {"datasource": "ds", "model": "m", "op": "created", "key": "k"}


def placeholders(template: str) -> list[str]:
    """Return the placeholder names in ``template``; raise ValueError if malformed."""
    names = []
    for _, name, spec, conv in string.Formatter().parse(template):
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            raise ValueError(
                f"unknown placeholder {{{name}}}; use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
            )
        if spec or conv:
            raise ValueError(f"placeholder {{{name}}} takes no format spec")
        names.append(name)
    return names


def check_template(template: str, validate_topic: Callable[[str], str | None]) -> str | None:
    """Return why ``template`` would produce an invalid publish topic, or None."""
    if not template:
        return "the topic template is empty"
    try:
        placeholders(template)
    except ValueError as exc:
        return str(exc)
    return validate_topic(template.format(**_SAMPLE))


def _safe(value: Any) -> str:
    # Substituted values must not inject wildcards or empty levels into a topic.
    text = value if type(value) is str else str(value)
    if "+" in text or "#" in text or "\x00" in text:  # scans, cheaper than three replaces
        text = text.replace("+", "_").replace("#", "_").replace("\x00", "_")
    return text or "_"


class TopicTemplate:
    """A checked template; :meth:`render` is on the publish path, so it is cheap."""

    def __init__(self, template: str) -> None:
        self.template = template
        self._names = placeholders(template)
        self._static = not self._names
        # For render_fields: the template as a %-format, and which of the four values fill it.
        self._format = "".join(
            literal.replace("%", "%%") + ("%s" if name is not None else "")
            for literal, name, _, _ in string.Formatter().parse(template)
        )
        self._order = tuple(PLACEHOLDERS.index(name) for name in self._names)

    def render(self, envelope: dict[str, Any]) -> str:
        if self._static:
            return self.template
        return self.template.format(**{n: _safe(envelope[n]) for n in self._names})

    def render_fields(self, datasource: str, model: str, op: str, key: str) -> str:
        """:meth:`render` from the four values themselves (a route's hot path: no dict)."""
        if self._static:
            return self.template
        values = (datasource, model, op, key)
        return self._format % tuple([_safe(values[i]) for i in self._order])
