"""Amounts for people: sizes in decimal units, a kind's unit kept after the size or the count."""

from __future__ import annotations

import pytest

from eventdesk.core.quantities import amount_text, size_text


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0 bytes"),
        (999, "999 bytes"),
        (1000, "1.0 kB"),
        (1_782_000, "1.8 MB"),
        (3.2e9, "3.2 GB"),
        (2e12, "2.0 TB"),
    ],
)
def test_sizes(size: float, text: str) -> None:
    assert size_text(size) == text


def test_amounts_keep_their_unit() -> None:
    assert amount_text(1_782_000, "bytes of WAL") == "1.8 MB of WAL"
    assert amount_text(512, "bytes") == "512 bytes"
    assert amount_text(1204, "messages") == "1,204 messages"
    assert amount_text(7.0, "") == "7"
