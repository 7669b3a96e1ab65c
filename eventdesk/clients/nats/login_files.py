"""What a NATS credentials file or NKey seed file must hold, checked without ever showing it:
the settings' field validators (so ``add``, ``list`` and the forms refuse a wrong file) and the
connection's ``file_login`` (which also needs the seed) share these checks.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from typing import Any

CREDS_NO_JWT = (
    "the credentials file holds no user JWT (a '-----BEGIN NATS USER JWT-----' block, "
    "as `nsc generate creds` writes it)"
)


def read_lines(path: str, what: str) -> list[str]:
    """The stripped lines of ``path``; OSError's text (never the content) as ValueError."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return [line.strip() for line in fh]
    except OSError as exc:
        raise ValueError(f"cannot read the {what} {path!r}: {exc.strerror or exc}") from None


def line_after(lines: list[str], marker: str) -> str:
    """The line after the first one holding ``marker`` (a creds file's block header), or ''."""
    at = next((i for i, line in enumerate(lines) if marker in line), len(lines))
    return lines[at + 1] if at + 1 < len(lines) else ""


def creds_seed(lines: list[str]) -> str:
    """The NKey seed of a credentials file's lines; ValueError if it holds no user JWT.
    WHY the JWT check: nats-py (2.x, Client._read_creds_user_jwt) reads lines until the JWT
    block's header and never stops at the end of a file without one (the loop would hang)."""
    if not line_after(lines, "BEGIN NATS USER JWT"):
        raise ValueError(CREDS_NO_JWT)
    return line_after(lines, "BEGIN USER NKEY SEED")


def nkey_seed(lines: list[str]) -> str:
    return next((line for line in lines if line.startswith("S")), "")


def seed_problem(seed: str, what: str) -> str | None:
    """Why ``seed`` is no NKey seed (never quoting it, nor nkeys' own texts), or None. Without
    the nkeys package nothing can be said here (the connection then names the package)."""
    if importlib.util.find_spec("nkeys") is None:
        return None
    import nkeys

    try:
        nkeys.from_seed(bytearray(seed.encode()))
    except Exception:  # nkeys.NkeysError, or PyNaCl's for a key of the wrong length
        return f"the {what} holds no valid NKey seed (an 'SU...' line, as `nk -gen user` or `nsc` write it)"
    return None


def check_creds_file(value: Any) -> str | None:
    """The ``creds`` field's validator."""
    return _file_problem(str(value or ""), "credentials file", creds_seed)


def check_nkey_file(value: Any) -> str | None:
    """The ``nkey`` field's validator."""
    return _file_problem(str(value or ""), "NKey seed file", nkey_seed)


def _file_problem(path: str, what: str, seed_of: Callable[[list[str]], str]) -> str | None:
    if not path:
        return None
    if not os.path.isfile(path):
        return f"no such file: {path!r}"
    try:
        return seed_problem(seed_of(read_lines(path, what)), what)
    except ValueError as exc:
        return str(exc)
