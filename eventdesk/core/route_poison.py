"""How a route finds and sets aside an event its broker can never take (the "poison" part of
the delivery promise in docs/architecture.md), and retries the ones the user asks for.

:class:`RoutePoison` is a part of :class:`~eventdesk.core.route_worker.RouteWorker` kept in its
own module: the publish loop calls ``_failed`` when a batch fails and ``_poisoned`` for a message
over the broker's limits. It runs only on failures, never per event on the hot path.
"""

from __future__ import annotations

import asyncio
import collections
import logging

from eventdesk.core import json_codec
from eventdesk.core.broker_link import BrokerLink
from eventdesk.core.capture import RouteRow
from eventdesk.core.contracts import MessageFields, Publisher
from eventdesk.core.envelope import encode_payload
from eventdesk.core.errors import BrokerDisconnectedError, BrokerError, BrokerNoAckError, PoisonError
from eventdesk.core.runtime_hub import RuntimeHub
from eventdesk.core.topic_template import TopicTemplate

log = logging.getLogger(__name__)

# After this many connection drops with the same first unacknowledged event, a route sends one
# event at a time until it is past what was in flight; an event after which the connection drops
# POISON_DROPS times in a row (each within POISON_DROP_S of sending it alone while connected) is
# quarantined, as is one the broker refused POISON_REFUSALS times for a reason it does not call
# permanent.
ISOLATE_AFTER_DROPS = 2
POISON_DROPS = 3
POISON_DROP_S = 5.0
POISON_REFUSALS = 3
REFUSAL_PAUSE_S = 1.0


def message_fields(raw: bytes, model: str) -> MessageFields:
    """The envelope fields of one stored event (for a publisher that wants them)."""
    env = json_codec.loads(raw)
    rev = env.get("rev")
    return MessageFields(
        str(env.get("datasource", "")),
        model,
        str(env.get("op", "")),
        str(env.get("key", "")),
        None if rev is None else str(rev),
        str(env.get("id", "")),
    )


class RoutePoison:
    """Poison detection and quarantine for a route worker (the attributes are the worker's)."""

    hub: RuntimeHub
    name: str
    model: str
    template: TopicTemplate
    format: str
    qos: int
    retain: bool
    on_poison: str
    outstanding_max: int  # the worker's ROUTE_BATCH
    link: BrokerLink | None
    position: int
    unsaved: int
    quarantined: int
    set_aside: set[int]
    isolate_to: int | None
    drop_pos: int
    drops: int
    single: tuple[RouteRow, float, bool] | None
    suspect: tuple[int, int]
    refused: tuple[int, int]
    inflight: collections.deque[tuple[int, int, asyncio.Future[None]]]

    async def _failed(self, failure: BaseException, sent: int) -> int:
        """A batch failed (everything in flight is abandoned): decide what to send next and
        return the position to resend from.

        A dropped connection is usually the network or a broker restart, and everything is
        resent. But a broker may also drop the connection because of one message (too big for
        MQTT 3.1.1, a topic its ACL denies): after ISOLATE_AFTER_DROPS drops with the same first
        unacknowledged event, the route sends one event at a time up to what was in flight, and
        an event after which the connection drops POISON_DROPS times in a row, right after it
        was sent alone, is a poison. A refused batch is resent one event at a time too, to find
        the event refused: a permanent refusal (PoisonError) makes it a poison at once, any
        other refusal after POISON_REFUSALS tries.
        """
        single, self.single = self.single, None
        if not isinstance(failure, BrokerError):
            raise failure
        if isinstance(failure, BrokerNoAckError):
            # No acknowledgement in time, the connection up (a stream electing its leader after
            # a node's loss): resend, batched. Counted as a drop, two of them in a long election
            # sent every route of the broker one event at a time, far behind the writes.
            log.warning(
                "%s: %s; sending again from capture position %d", self.label, failure.detail, self.position
            )
            return self.position
        if isinstance(failure, BrokerDisconnectedError):
            if single is not None:
                row, at, alone = single
                if alone and asyncio.get_running_loop().time() - at <= POISON_DROP_S:
                    pos, drops = self.suspect
                    drops = drops + 1 if pos == row[0] else 1
                    self.suspect = (row[0], drops)
                    if drops >= POISON_DROPS:
                        topic, payload = self._message(row)
                        self._poisoned(
                            row,
                            "message",
                            f"the broker closed the connection each time this message was sent ({drops} times "
                            f"in a row): too big for it (a payload of {len(payload)} bytes), or a topic it "
                            f"refuses ({topic[:100]!r})",
                        )
                return self.position
            if self.position == self.drop_pos:
                self.drops += 1
            else:
                self.drop_pos, self.drops = self.position, 1
            if self.drops >= ISOLATE_AFTER_DROPS and sent > self.position:
                if self.isolate_to is None:
                    log.warning(
                        "%s: the connection dropped %d times with the event after capture position %d "
                        "first in flight; sending one event at a time up to position %d",
                        self.label,
                        self.drops,
                        self.position,
                        sent,
                    )
                self.isolate_to = max(self.isolate_to or 0, sent)
            return self.position
        if single is None:  # refused somewhere in a batch: find which event
            if sent > self.position:
                self.isolate_to = max(self.isolate_to or 0, sent)
            return self.position
        row = single[0]
        if isinstance(failure, PoisonError):
            self._poisoned(row, failure.field or "message", failure.detail)
            return self.position
        pos, refusals = self.refused
        refusals = refusals + 1 if pos == row[0] else 1
        self.refused = (row[0], refusals)
        if refusals >= POISON_REFUSALS:
            self._poisoned(row, "message", f"refused {refusals} times: {failure.detail}")
        else:
            log.warning(
                "%s: %s; sending it again in %g s", self._describe(row), failure.detail, REFUSAL_PAUSE_S
            )
            await asyncio.sleep(REFUSAL_PAUSE_S)
        return self.position

    @property
    def label(self) -> str:
        return f"route {self.name!r}"

    def _describe(self, row: RouteRow) -> str:
        """The route and the event of ``row`` as a user finds them (a huge key is cut short)."""
        key = row[4]
        shown = repr(key) if len(key) <= 80 else f"{key[:60]!r}... ({len(key)} characters)"
        return f"{self.label}: event {shown} of model {self.model!r} (capture position {row[0]})"

    def _poisoned(
        self, row: RouteRow, field: str, why: str, *, in_order: bool = True, retried: bool = False
    ) -> None:
        """The event of ``row`` can never be published as the route stands: quarantine it (the
        route goes past it) or, with on_poison stop, stop the route (raises PoisonError).

        ``in_order``: ``row`` is the next event after ``position`` (sent alone), so the position
        moves past it here; otherwise the batch it was left out of moves it, or (``retried``) it
        is a quarantined event the user asked to retry."""
        pos = row[0]
        if pos in self.set_aside and not retried and self.on_poison != "stop":
            return  # met again in a resend: recorded already
        if self.on_poison == "stop":
            raise PoisonError(
                f"event {row[4][:80]!r} of model {self.model!r} (capture position {pos}) cannot be published: "
                f"field {field!r}: {why} (on_poison stop; quarantine it with on_poison quarantine, or fix the "
                "route, then start it again)",
                obj=self.label,
                field="on_poison",
            )
        reason = f"field {field!r}: {why}"
        log.warning("%s quarantined: %s", self._describe(row), reason)
        quarantine = self.hub.capture.quarantine_add
        submitted = self.hub.executor.submit(quarantine, self.name, pos, field, reason)
        asyncio.wrap_future(submitted).add_done_callback(self._quarantine_saved)
        self.quarantined += 1
        if len(self.set_aside) >= self.outstanding_max:  # those behind the position are not met again
            self.set_aside = {p for p in self.set_aside if p > self.position}
        self.set_aside.add(pos)
        self.suspect = self.refused = (-1, 0)
        if in_order and pos > self.position:
            self.position = pos  # saved after the quarantine entry (the capture thread keeps the order)
            self.unsaved += 1
            self._isolated_past()
        self.hub.quarantined(self.name, pos, field, reason)

    def _quarantine_saved(self, saving: asyncio.Future[None]) -> None:
        if not saving.cancelled() and saving.exception() is not None:
            log.error("%s: could not record a quarantined event: %s", self.label, saving.exception())

    def _isolated_past(self) -> None:
        if self.isolate_to is not None and self.position >= self.isolate_to:
            self.isolate_to = None
            if self.link is not None:
                self.link.release_isolation(self)
            log.info("%s: past the events in flight at the drops; sending in batches again", self.label)

    def _message(self, row: RouteRow) -> tuple[str, bytes]:
        _, raw, datasource, op, key = row
        topic = self.template.render_fields(datasource, self.model, op, key)
        return topic, raw if self.format == "envelope" else encode_payload(json_codec.loads(raw), self.format)

    async def _retry_quarantined(self, publisher: Publisher) -> None:
        """Publish the quarantined events the user asked to retry (``eventdesk quarantine retry``),
        one at a time; one that fails again goes back to the quarantine with the new reason."""
        capture = self.hub.capture
        rows = await self.hub.read_for_route(capture.quarantine_due, self.name)
        for row in rows:
            if not publisher.connected:
                return  # they stay marked: retried once connected
            topic, payload = self._message(row)
            problem = publisher.check_message(topic, payload, self.qos)
            if problem is not None:
                self._poisoned(row, problem.field or "message", problem.detail, in_order=False, retried=True)
                continue
            try:
                if publisher.wants_fields:
                    fields = [message_fields(row[1], self.model)]
                    sending = publisher.publish_with_fields([(topic, payload)], fields, self.qos, self.retain)
                else:
                    sending = publisher.publish(topic, payload, self.qos, self.retain)
                await asyncio.wait_for(sending, 30.0)
            except PoisonError as exc:
                self._poisoned(row, exc.field or "message", exc.detail, in_order=False, retried=True)
            except (BrokerError, TimeoutError) as exc:
                why = exc.detail if isinstance(exc, BrokerError) else "no acknowledgement within 30 s"
                self._poisoned(
                    row, "message", f"retried, and failed again: {why}", in_order=False, retried=True
                )
            else:
                await self.hub.db(capture.quarantine_release, self.name, row[0])
                log.info("%s published on retry; it left the quarantine", self._describe(row))
