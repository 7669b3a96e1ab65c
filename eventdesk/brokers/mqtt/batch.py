"""What a message in a connection settles: its own future, or its :class:`Batch`.

Creating, resolving and checking a future per message is measurable in a backlog drain
(docs/performance.md, "The MQTT publisher"), so the messages of one ``publish_many`` share one.
"""

from __future__ import annotations

import asyncio


class Batch:
    """The messages of one :meth:`MqttPublisher.publish_many`: one future for all of them.

    It stands in for each message's future inside a connection (``done``, ``set_result``,
    ``set_exception``): the n-th acknowledgement resolves it, the first failure fails it. A
    thousand messages then cost one future instead of a thousand.
    """

    __slots__ = ("future", "left")

    def __init__(self, future: asyncio.Future[None], count: int) -> None:
        self.future = future
        self.left = count

    def done(self) -> bool:
        return self.future.done()

    def set_result(self, _result: None) -> None:
        self.left -= 1
        if self.left <= 0 and not self.future.done():
            self.future.set_result(None)

    def set_exception(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


Settle = asyncio.Future[None] | Batch
"""What a message in a connection settles: its own future, or its batch."""


def future_of(target: Settle) -> asyncio.Future[None]:
    return target.future if isinstance(target, Batch) else target
