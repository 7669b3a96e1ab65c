"""A keyring backend for tests only: in memory, or in a JSON file when
``EVENTDESK_TEST_KEYRING_FILE`` is set (so a CLI child process sees the same secrets).

Never shipped: the product refuses to keep secrets in plain files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError


class TestKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self._memory: dict[str, dict[str, str]] = {}

    def _file(self) -> Path | None:
        value = os.environ.get("EVENTDESK_TEST_KEYRING_FILE")
        return Path(value) if value else None

    def _load(self) -> dict[str, dict[str, str]]:
        path = self._file()
        if path is None:
            return self._memory
        if not path.exists():
            return {}
        data: dict[str, dict[str, str]] = json.loads(path.read_text())
        return data

    def _save(self, data: dict[str, dict[str, str]]) -> None:
        path = self._file()
        if path is None:
            self._memory = data
        else:
            path.write_text(json.dumps(data))

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(service, {}).get(username)

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data.setdefault(service, {})[username] = password
        self._save(data)

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        try:
            del data[service][username]
        except KeyError as exc:
            raise PasswordDeleteError(username) from exc
        self._save(data)
