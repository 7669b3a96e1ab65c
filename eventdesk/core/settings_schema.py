"""Typed settings schemas: each connector and broker kind declares its settings once.

Validation, CLI flags and the UI's forms are all derived from a :class:`Schema`, so a new
kind needs no UI code. The validated values become a kind's :class:`KindSettings`, a frozen
dataclass the code reads by attribute. Secret fields are never stored in the workspace: they
hold a reference to the keyring (or an environment variable) instead.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

from eventdesk.core.errors import ConfigError

FieldType = Literal["str", "int", "float", "bool", "choice", "json", "url", "path", "secret"]

Validator = Callable[[Any], str | None]


@dataclass(frozen=True)
class Field:
    """One setting: how it is typed, defaulted, explained and checked."""

    name: str
    type: FieldType
    label: str = ""
    help: str = ""
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    url_schemes: tuple[str, ...] = ()
    validator: Validator | None = None
    advanced: bool = False
    json_type: Literal["", "object", "array"] = ""
    # (old, current) names of choices: an old name is still accepted and becomes the current one.
    aliases: tuple[tuple[str, str], ...] = ()

    @property
    def secret(self) -> bool:
        return self.type == "secret"

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    def coerce(self, value: Any, obj: str) -> Any:
        """Return ``value`` converted to this field's type, or raise ConfigError naming it."""
        if value is None or (isinstance(value, str) and value == "" and self.type != "str"):
            if self.required and self.default in (None, ""):
                raise ConfigError("a value is required", obj=obj, field=self.name)
            if self.default is None:
                return None
            value = self.default
        try:
            result = self._convert(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ConfigError(str(exc), obj=obj, field=self.name) from None
        if self.required and result in ("", None):
            raise ConfigError("a value is required", obj=obj, field=self.name)
        if self.validator is not None:
            problem = self.validator(result)
            if problem:
                raise ConfigError(problem, obj=obj, field=self.name)
        return result

    def entered(self, value: Any) -> Any:
        """What a person typed (a CLI flag, a form's field), as it is to be stored: a relative
        file path is made absolute against the current directory, so the workspace means the
        same file to a service or an app started elsewhere."""
        if self.type == "path" and isinstance(value, str) and value.strip():
            return os.path.abspath(os.path.expanduser(value.strip()))
        return value

    def _convert(self, value: Any) -> Any:
        t = self.type
        if t in ("str", "path", "secret"):
            if not isinstance(value, str):
                raise TypeError(f"expected text, got {type(value).__name__}")
            return _check_text(value)
        if t == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
                return False
            raise ValueError(f"expected true or false, got {value!r}")
        if t in ("int", "float"):
            if isinstance(value, bool):
                raise TypeError("expected a number, got true/false")
            try:
                number: float = int(value) if t == "int" else float(value)
            except (TypeError, ValueError):
                raise ValueError(
                    f"expected {'a whole number' if t == 'int' else 'a number'}, got {value!r}"
                ) from None
            if not math.isfinite(number):
                raise ValueError(f"expected a finite number, got {value!r}")
            if self.minimum is not None and number < self.minimum:
                raise ValueError(f"must be at least {self.minimum:g}, got {number:g}")
            if self.maximum is not None and number > self.maximum:
                raise ValueError(f"must be at most {self.maximum:g}, got {number:g}")
            return number
        if t == "choice":
            text = dict(self.aliases).get(str(value), str(value))
            if text not in self.choices:
                raise ValueError(f"must be one of {', '.join(self.choices)}; got {text!r}")
            return text
        if t == "json":
            return self._convert_json(value)
        if t == "url":
            if not isinstance(value, str):
                raise TypeError(f"expected a URL, got {type(value).__name__}")
            parts = urlsplit(value)
            if not parts.scheme or not parts.hostname:
                raise ValueError(f"not a URL (expected scheme://host[:port]): {redact_url(value)!r}")
            if self.url_schemes and parts.scheme not in self.url_schemes:
                raise ValueError(f"scheme must be one of {', '.join(self.url_schemes)}; got {parts.scheme!r}")
            try:
                _ = parts.port
            except ValueError:
                raise ValueError(f"invalid port in {redact_url(value)!r}") from None
            if parts.password:
                raise ValueError("put the password in the secret store, not in the URL")
            problem = check_host(parts.hostname)
            if problem:
                raise ValueError(problem)
            return _check_text(value)
        raise TypeError(f"unknown field type {t}")  # pragma: no cover - schema authoring error

    def _convert_json(self, value: Any) -> Any:
        """Parse text as JSON; check the kind of JSON this field takes and that it can be saved."""
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
            except RecursionError:
                raise ValueError("invalid JSON: nested too deeply") from None
        wanted = {"object": dict, "array": list}.get(self.json_type)
        if wanted is not None and not isinstance(value, wanted):
            raise ValueError(f"expected a JSON {self.json_type}, got {json_kind(value)}")
        try:
            json.dumps(value, allow_nan=False)
        except RecursionError:
            raise ValueError("nested too deeply") from None
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not JSON: {exc}") from None
        return value


# The same setting in every kind that connects to a server with a time limit of its own
# (postgres, nats): one declaration.
CONNECT_TIMEOUT = Field(
    "connect_timeout",
    "float",
    label="Connect timeout (s)",
    default=10.0,
    minimum=1,
    maximum=300,
    advanced=True,
    help="How long one connection attempt may take before it is retried.",
)


@dataclass(frozen=True)
class Schema:
    """The settings of one kind (or of one object type such as a route)."""

    kind: str
    fields: tuple[Field, ...]
    title: str = ""
    description: str = ""
    cross_checks: tuple[Callable[[Mapping[str, Any]], tuple[str, str] | None], ...] = field(default=())

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def defaults(self) -> dict[str, Any]:
        return {f.name: f.default for f in self.fields if not f.secret}

    def validate(self, values: Mapping[str, Any], obj: str) -> dict[str, Any]:
        """Coerce and check every non-secret field; unknown keys are errors naming the key."""
        known = set(self.names)
        for key in values:
            if key not in known:
                raise ConfigError(f"unknown setting for kind {self.kind!r}", obj=obj, field=key)
        result: dict[str, Any] = {}
        for f in self.fields:
            if f.secret:
                continue
            result[f.name] = f.coerce(values.get(f.name), obj)
        for check in self.cross_checks:
            problem = check(result)
            if problem is not None:
                name, message = problem
                raise ConfigError(message, obj=obj, field=name)
        return result


BATCH_SIZE = Field(
    "batch_size",
    "int",
    label="Batch size",
    default=1000,
    minimum=1,
    maximum=10000,
    advanced=True,
    help="Largest number of changes handed over at once.",
)
"""The model setting of the source kinds that read in batches (cloudant, postgres, nats)."""


def since_field(starts: str) -> Field:
    """A source model's ``since``: ``now`` or ``0`` (the past too), for its first run only.
    ``starts`` says, in the kind's words, where each choice starts reading."""
    return Field(
        "since",
        "choice",
        default="now",
        choices=("now", "0"),
        help=f"Where the first run starts: {starts}. Later runs resume from the checkpoint.",
    )


def json_kind(value: Any) -> str:
    """How a JSON value is named in messages: "a string", "an array", ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object" if isinstance(value, dict) else "not JSON"


def _check_text(value: str) -> str:
    """Text that every later consumer (files, sockets, headers) can take: UTF-8, no NUL."""
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (it holds a lone surrogate)") from None
    return value


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def check_host(host: Any) -> str | None:
    """None if ``host`` is an IP address or a valid host name, else what is wrong with it."""
    text = str(host or "")
    if not text:
        return "a host name or IP address is required"
    try:
        ipaddress.ip_address(text)
        return None
    except ValueError:
        pass
    try:
        ascii_name = text.encode("idna").decode("ascii")
    except (UnicodeError, ValueError):
        return f"not a valid host name: {text!r}"
    labels = ascii_name.rstrip(".").split(".")
    if len(ascii_name) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        return f"not a valid host name or IP address: {text!r}"
    return None


def check_pem_file(value: Any) -> str | None:
    """None if ``value`` is empty or names a readable PEM file, else what is wrong with it."""
    path = str(value or "")
    if not path:
        return None
    if not os.path.exists(path):
        return f"no such file: {path!r}"
    if not os.path.isfile(path):
        return f"not a file: {path!r}"
    try:
        with open(path, "rb") as fh:
            head = fh.read(64 * 1024)
    except OSError as exc:
        return f"cannot read {path!r}: {exc.strerror or exc}"
    if b"-----BEGIN " not in head:
        return f"not a PEM file (no '-----BEGIN' line): {path!r}"
    return None


def redact_url(url: str) -> str:
    """Return ``url`` with any user-info password replaced, safe for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.username:
        netloc = f"{parts.username}:***@{netloc}"
    if parts.port:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc).geturl()


class KindSettings:
    """The validated settings of one object, typed and frozen.

    A subclass is a ``@dataclass(frozen=True)`` whose fields are exactly its :attr:`schema`'s
    non-secret fields (tests/core/test_typed_settings.py checks every kind), so defaults and
    checks live in the schema alone and the code reads ``settings.timeout``, never
    ``settings.get("timeout") or 60.0``.
    """

    schema: ClassVar[Schema]

    @classmethod
    def load(cls, values: Mapping[str, Any], obj: str) -> Self:
        """Validate ``values`` against the schema (ConfigError naming ``obj`` and the field)."""
        return cls.from_validated(cls.schema.validate(values, obj))

    @classmethod
    def from_validated(cls, values: Mapping[str, Any]) -> Self:
        """Build from values the schema already validated (the workspace stores them so)."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        defaults = cls.schema.defaults()
        return cls(**{name: values.get(name, defaults.get(name)) for name in names})

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload,no-any-return]


def settings_mismatch(settings_type: type[KindSettings]) -> str | None:
    """None if ``settings_type``'s fields are its schema's non-secret fields, else the difference."""
    typed = {f.name for f in dataclasses.fields(settings_type)}  # type: ignore[arg-type]
    declared = {f.name for f in settings_type.schema.fields if not f.secret}
    if typed == declared:
        return None
    return (
        f"{settings_type.__name__}: only in the dataclass {sorted(typed - declared)}, "
        f"only in the schema {sorted(declared - typed)}"
    )
