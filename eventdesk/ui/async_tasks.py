"""Owned background tasks for the GUI: one named slot per job, nothing fire-and-forget.

Starting a slot cancels its predecessor (starting a model while it is stopping, say); every
task is kept until it is done, and :meth:`TaskSlots.cancel_all` awaits them on shutdown.
Dialogs are awaited through :func:`dialog_result` (a Yes/Cancel question through
:func:`ask_yes`), never ``exec()``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any

from PySide6.QtWidgets import QDialog, QMessageBox, QWidget

log = logging.getLogger(__name__)

ErrorHandler = Callable[[str, BaseException], None]


class TaskSlots:
    """Named asyncio tasks owned by one widget; failures go to ``on_error``, not to the void."""

    def __init__(self, on_error: ErrorHandler | None = None) -> None:
        self.on_error = on_error
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._retired: set[asyncio.Task[Any]] = set()

    def start(self, slot: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in ``slot``, cancelling whatever ran there before."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            coro.close()  # no loop (yet): never leave an un-awaited coroutine behind
            raise
        self.cancel(slot)
        task = loop.create_task(coro, name=slot)
        self._tasks[slot] = task
        task.add_done_callback(partial(self._done, slot))
        return task

    def running(self, slot: str) -> bool:
        task = self._tasks.get(slot)
        return task is not None and not task.done()

    def task(self, slot: str) -> asyncio.Task[Any] | None:
        return self._tasks.get(slot)

    def cancel(self, slot: str) -> None:
        old = self._tasks.pop(slot, None)
        if old is not None and not old.done():
            old.cancel()
            self._retired.add(old)
            old.add_done_callback(self._retired.discard)

    @property
    def pending(self) -> list[asyncio.Task[Any]]:
        return [t for t in (*self._tasks.values(), *self._retired) if not t.done()]

    async def cancel_all(self) -> None:
        tasks = self.pending
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._retired.clear()

    def _done(self, slot: str, task: asyncio.Task[Any]) -> None:
        if self._tasks.get(slot) is task:
            del self._tasks[slot]
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        if self.on_error is not None:
            self.on_error(slot, exc)
        else:
            log.error("background task %s failed", slot, exc_info=exc)


def dialog_result(dialog: QDialog) -> asyncio.Future[int]:
    """Open ``dialog`` window-modally (``open()``, not ``exec()``) and return its result future."""
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def finished(result: int) -> None:
        if not future.done():
            future.set_result(result)

    def destroyed() -> None:
        if not future.done():
            future.set_result(QDialog.DialogCode.Rejected.value)

    dialog.finished.connect(finished)
    dialog.destroyed.connect(destroyed)
    dialog.open()
    return future


async def ask_yes(
    parent: QWidget,
    title: str,
    text: str,
    shown: Callable[[QMessageBox | None], None],
    icon: QMessageBox.Icon = QMessageBox.Icon.Question,
) -> bool:
    """Ask Yes/Cancel (Cancel by default) without blocking the loop; True for Yes. ``shown`` is
    handed the box while it is open (tests click it), then None."""
    box = QMessageBox(
        icon, title, text, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, parent
    )
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    shown(box)
    try:
        await dialog_result(box)
        return box.standardButton(box.clickedButton()) == QMessageBox.StandardButton.Yes
    finally:
        box.deleteLater()
        shown(None)
