"""Event filters: free text, models, ops and a JMESPath expression over the whole envelope.

Qt-free so the live table, exports and the CLI apply exactly the same rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jmespath
from jmespath import exceptions as jmespath_errors
from jmespath.functions import Functions
from jmespath.lexer import Lexer
from jmespath.parser import ParsedResult

from eventdesk.core import json_codec
from eventdesk.core.capture import CapturedEvent

__all__ = ["EventFilter", "FilterError", "filter_events", "is_truthy"]


class FilterError(ValueError):
    """A filter that cannot be compiled; ``position`` is the 0-based column of the problem."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position

    def describe(self) -> str:
        """The message with a 1-based column, as shown next to the expression field."""
        if self.position is None:
            return self.message
        return f"column {self.position + 1}: {self.message}"


def is_truthy(value: Any) -> bool:
    """JMESPath truthiness: false, null, "", [] and {} are false; every number (0 too) is true."""
    if value is None or value is False:
        return False
    if isinstance(value, str | list | dict):
        return len(value) > 0
    return True


_JMESPATH_DEFAULT_MESSAGE = "Invalid jmespath expression"


_SIGNATURES: dict[str, tuple[dict[str, Any], ...]] = {
    name: entry["signature"] for name, entry in Functions().FUNCTION_TABLE.items()
}
_OPENERS = frozenset({"lparen", "lbracket", "lbrace", "filter"})
_CLOSERS = frozenset({"rparen", "rbracket", "rbrace"})


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _check_functions(expression: str) -> None:
    """Raise FilterError for a call of an unknown function or with the wrong number of
    arguments: jmespath finds both only when it evaluates the call, and a filter whose every
    evaluation fails would silently match nothing. Runs on an expression that compiled."""
    tokens = list(Lexer().tokenize(expression))
    for i, token in enumerate(tokens[:-1]):
        if token["type"] != "unquoted_identifier" or tokens[i + 1]["type"] != "lparen":
            continue
        name, start = token["value"], token["start"]
        signature = _SIGNATURES.get(name)
        if signature is None:
            known = ", ".join(sorted(_SIGNATURES))
            raise FilterError(f"unknown function {name}(); the functions are {known}", start)
        depth, args = 0, 0
        for inner in tokens[i + 2 :]:
            kind = inner["type"]
            if depth == 0 and kind == "rparen":
                break
            if args == 0:
                args = 1  # the call has an argument
            if kind in _OPENERS:
                depth += 1
            elif kind in _CLOSERS:
                depth -= 1
            elif depth == 0 and kind == "comma":
                args += 1
        variadic = bool(signature) and bool(signature[-1].get("variadic"))
        wanted = len(signature)
        if (variadic and args < wanted) or (not variadic and args != wanted):
            expected = f"at least {_plural(wanted, 'argument')}" if variadic else _plural(wanted, "argument")
            raise FilterError(f"{name}() takes {expected}, not {args}", start)


def _compile_expression(expression: str) -> ParsedResult:
    try:
        compiled = jmespath.compile(expression)
        _check_functions(expression)
        return compiled
    except jmespath_errors.LexerError as exc:
        raise FilterError(f"{exc.message}", exc.lexer_position) from None
    except jmespath_errors.IncompleteExpressionError:
        raise FilterError("incomplete expression", len(expression)) from None
    except jmespath_errors.ArityError as exc:
        raise FilterError(str(exc), None) from None
    except jmespath_errors.ParseError as exc:
        token = "end of expression" if exc.token_value is None else repr(exc.token_value)
        msg = "invalid expression" if exc.msg == _JMESPATH_DEFAULT_MESSAGE else exc.msg
        raise FilterError(f"{msg} (at {token})", exc.lex_position) from None
    except jmespath_errors.JMESPathError as exc:
        raise FilterError(str(exc), None) from None


@dataclass(frozen=True)
class EventFilter:
    """What the user wants to see. The empty filter matches every event.

    ``models``/``ops`` of ``None`` mean "any"; ``text`` is a case-insensitive substring of the
    key, model, op, datasource or payload JSON; ``expression`` is JMESPath over the envelope,
    matching when its result is truthy (an expression that fails at search time does not match).
    ``quarantined`` keeps only events some route holds in quarantine: that is known to the
    capture, not the envelope, so :meth:`matches` leaves it to whoever reads the capture
    (``Capture.latest(quarantined=...)``, an export's scope).
    """

    text: str = ""
    models: frozenset[str] | None = None
    ops: frozenset[str] | None = None
    expression: str = ""
    quarantined: bool = False
    _compiled: ParsedResult | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def is_empty(self) -> bool:
        return (
            not self.text
            and self.models is None
            and self.ops is None
            and not self.expression.strip()
            and not self.quarantined
        )

    def compile(self) -> EventFilter:
        """Check the expression (raising :class:`FilterError`) and keep it compiled; returns self."""
        if self.expression.strip() and self._compiled is None:
            object.__setattr__(self, "_compiled", _compile_expression(self.expression))
        return self

    def matches(self, envelope: dict[str, Any]) -> bool:
        if self.models is not None and envelope.get("model") not in self.models:
            return False
        if self.ops is not None and envelope.get("op") not in self.ops:
            return False
        if self.text and not self._text_matches(envelope):
            return False
        if self.expression.strip():
            self.compile()
            compiled = self._compiled
            assert compiled is not None
            try:
                return is_truthy(compiled.search(envelope))
            # a search that fails on this envelope (type errors, bad arguments) is "no match"
            except Exception:
                return False
        return True

    def _text_matches(self, envelope: dict[str, Any]) -> bool:
        needle = self.text.casefold()
        for name in ("key", "model", "op", "datasource"):
            value = envelope.get(name)
            if value is not None and needle in str(value).casefold():
                return True
        payload = envelope.get("payload")
        if payload is None:
            return False
        try:
            text = json_codec.dumps(payload).decode()
        except TypeError:
            text = str(payload)
        return needle in text.casefold()


def filter_events(events: Iterable[CapturedEvent], flt: EventFilter) -> Iterator[CapturedEvent]:
    """The events of ``events`` that ``flt`` matches, lazily and in order."""
    if flt.is_empty:
        yield from events
        return
    flt.compile()
    for event in events:
        if flt.matches(event.envelope):
            yield event
