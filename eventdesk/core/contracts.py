"""The two small contracts behind which every source and every broker sits.

A :class:`Connector` follows one model of one datasource and hands batches of events to its
:class:`ConnectorHost` (the runtime). A :class:`Publisher` delivers bytes to a broker and
resolves a future when the broker acknowledged them (QoS >= 1) or the client accepted them
(QoS 0). Swapping brokers touches no connector or UI code (the strong-pubsub role).
"""

from __future__ import annotations

import asyncio
import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol

from eventdesk.core.errors import PoisonError

if TYPE_CHECKING:
    from eventdesk.core.envelope import Event
    from eventdesk.core.intake import Intake
    from eventdesk.core.object_configs import BrokerConfig, DatasourceConfig, ModelConfig
    from eventdesk.core.settings_schema import KindSettings, Schema


# MQTT's limits, the default for every broker: a topic of 65,535 bytes, a packet of 256 MB.
MAX_TOPIC_BYTES = 65535
MAX_PAYLOAD_BYTES = 268435455 - MAX_TOPIC_BYTES - 16


class MessageFields(NamedTuple):
    """The envelope fields of one message, for a broker that carries them beside the payload
    (headers, a de-duplication id): see :attr:`Publisher.wants_fields`."""

    datasource: str
    model: str
    op: str
    key: str
    rev: str | None
    id: str  # the event's id: the same on every resend of one captured event


class State(enum.StrEnum):
    """The life cycle shown for every connector and broker connection."""

    STOPPED = "stopped"
    CONNECTING = "connecting"
    RUNNING = "running"
    RETRYING = "retrying"
    ERROR = "error"
    STOPPING = "stopping"


@dataclass(frozen=True)
class StateChange:
    """A state with why: ``detail`` is the last error (never a secret), ``retry_in`` seconds."""

    state: State
    detail: str | None = None
    retry_in: float | None = None


@dataclass(frozen=True)
class LeftOnServer:
    """One object EventDesk made on a source server (:meth:`Connector.left_on_server`): a
    PostgreSQL replication slot and its publication, a NATS durable consumer."""

    name: str  # as the server names it; ``eventdesk datasource leftovers --drop NAME`` takes it
    what: str  # in words: "replication slot + publication", "durable consumer on stream 'X'"
    held: int | None  # what it keeps on the server, in ``unit``; None: the server does not say
    unit: str  # "bytes of WAL", "messages"
    active: bool | None  # something reads it now (None: the server does not say)
    followed_by: str | None  # the model of this workspace following it; None: nobody
    other_workspace: bool = False  # named for another workspace (another home may follow it)
    container: str = ""  # the server object it lives in, for the kind (nats: its stream)

    @property
    def droppable(self) -> bool:
        """Offered for dropping: this workspace's, followed by no model and not in use."""
        return self.followed_by is None and not self.other_workspace and not self.active


class ConnectorHost(Protocol):
    """What the runtime offers a running connector."""

    loop: asyncio.AbstractEventLoop

    async def deliver(self, events: list[Event], checkpoint: Any) -> None:
        """Append ``events`` to capture and advance the checkpoint to ``checkpoint``.

        Returns once both are committed in one transaction. Connectors await it (or wait on
        it from their thread with ``run_coroutine_threadsafe``) before reading further: this
        is the pipeline's back-pressure. A connector may make its next call before an earlier
        one returned: calls commit in the order they were made, and once one fails every
        later one fails too, so a checkpoint never moves past a batch that was not captured.
        """

    def intake(self, batch_size: int) -> Intake:
        """For a connector that reads in a worker thread: an :class:`Intake` that thread puts
        events into. The capture thread appends them in batches of up to ``batch_size`` (each
        batch's checkpoint is its last event's ``seq``), in order, without a turn of the loop;
        the same commit rules as :meth:`deliver` hold."""

    def set_state(self, change: StateChange) -> None:
        """Report a state change (called on the loop thread)."""


class Connector(ABC):
    """Follows one model of one datasource (docs/architecture.md, "Adding a source: a connector kind")."""

    kind: ClassVar[str]
    # The typed, frozen settings of a datasource and of a model of this kind; each carries the
    # schema that drives validation, CLI flags and forms (``datasource_schema`` is its schema).
    datasource_settings: ClassVar[type[KindSettings]]
    model_settings: ClassVar[type[KindSettings]]
    datasource_schema: ClassVar[Schema]
    model_schema: ClassVar[Schema]

    def __init__(
        self, *, datasource: DatasourceConfig, model: ModelConfig, secret: str | None, host: ConnectorHost
    ) -> None:
        self.datasource = datasource
        self.model = model
        self.secret = secret
        self.host = host

    @abstractmethod
    async def run(self, since: Any) -> None:
        """Follow changes from ``since`` (a checkpoint, ``"now"`` or ``"0"``) until cancelled.

        Transient failures are retried with jittered backoff (reported as RETRYING); a
        terminal one raises :class:`~eventdesk.core.errors.ConnectorError` with
        ``terminal=True``. Cancellation must return promptly (< 1 s) without losing a batch
        that was already handed to ``host.deliver``.
        """

    @classmethod
    @abstractmethod
    async def test_connection(
        cls, datasource: DatasourceConfig, secret: str | None, model: ModelConfig | None = None
    ) -> str:
        """Check that the datasource (and model, if given) can be reached; return a summary."""

    # The unit of :meth:`source_lag` in words ("messages", "bytes of WAL").
    source_lag_unit: ClassVar[str] = ""

    def source_lag(self) -> float | None:
        """How far behind its source the model is, in :attr:`source_lag_unit` (nats: messages
        the stream holds that are not captured yet; postgres: bytes of WAL the slot holds back);
        None: this kind does not say. Read on the loop (``Runtime.connector_of(model)
        .source_lag()``: the metrics' source lag, the fleet's lease figures)."""
        return None

    # The model setting naming what a model follows on its datasource ("database", "table"),
    # filled from :meth:`list_sources` by the model dialog; None: this kind cannot list them.
    source_field: ClassVar[str | None] = None

    @classmethod
    async def list_sources(cls, datasource: DatasourceConfig, secret: str | None) -> list[str]:
        """What a model of this datasource can follow (databases, tables), sorted."""
        raise NotImplementedError(f"a {cls.kind} datasource cannot list what it holds")

    @classmethod
    def held_on_server(cls, datasource: DatasourceConfig, model: ModelConfig) -> str | None:
        """What following ``model`` keeps on the source server after EventDesk lets go of it
        (a PostgreSQL replication slot holds WAL until dropped), in words; None: nothing."""
        return None

    @classmethod
    async def release_model(cls, datasource: DatasourceConfig, secret: str | None, model: ModelConfig) -> str:
        """Drop what :meth:`held_on_server` names (``eventdesk remove ... --drop-slot``); a summary."""
        return "nothing to drop"

    @classmethod
    async def left_on_server(
        cls,
        datasource: DatasourceConfig,
        secret: str | None,
        models: Sequence[tuple[DatasourceConfig, ModelConfig]],
    ) -> list[LeftOnServer]:
        """What EventDesk made on ``datasource``'s server (named as :meth:`held_on_server`
        names it), each marked with the model of ``models`` (every model of this kind in the
        workspace, with its datasource) that follows it; empty: this kind keeps nothing."""
        return []

    @classmethod
    async def drop_left(cls, datasource: DatasourceConfig, secret: str | None, entry: LeftOnServer) -> str:
        """Drop one object :meth:`left_on_server` listed (the caller checked nobody follows it)."""
        raise NotImplementedError(f"a {cls.kind} datasource keeps nothing on its server")

    @classmethod
    def check_datasource(cls, datasource: DatasourceConfig, has_secret: bool) -> None:
        """Checks beyond the settings schema, made when a datasource is added or changed: raise
        :class:`~eventdesk.core.errors.ConfigError` naming the field (none by default)."""
        return


class Publisher(ABC):
    """Publishes to one broker (docs/architecture.md, "Adding a broker kind")."""

    kind: ClassVar[str]
    settings_type: ClassVar[type[KindSettings]]  # typed settings; ``schema`` is its schema
    schema: ClassVar[Schema]
    # True for a broker EventDesk runs itself (kind ``local``): the runtime keeps it started for
    # as long as the runtime runs, so clients can subscribe before any route publishes.
    hosted: ClassVar[bool] = False
    # The topic template's level separator: "/" (MQTT topics) or "." (NATS subjects), which
    # also picks how values are escaped (core/topic_template.py).
    topic_separator: ClassVar[str] = "/"
    # True: routes publish through :meth:`publish_with_fields`, handing each message's
    # envelope fields along (parsing them costs a little, so only kinds that use them ask).
    wants_fields: ClassVar[bool] = False

    def __init__(
        self, *, config: BrokerConfig, secret: str | None, on_state: Callable[[StateChange], None]
    ) -> None:
        self.config = config
        self.secret = secret
        self.on_state = on_state

    @staticmethod
    @abstractmethod
    def validate_topic(topic: str) -> str | None:
        """Return why ``topic`` (after template expansion) cannot be published to, or None."""

    def message_bounds(self) -> tuple[int, int]:
        """``(topic characters, payload bytes)``: a message within both needs no
        :meth:`check_message` (the route compares two lengths per message, nothing more)."""
        return MAX_TOPIC_BYTES // 4, MAX_PAYLOAD_BYTES

    def check_message(self, topic: str, payload: bytes, qos: int) -> PoisonError | None:
        """Why this broker can never take this message (a :class:`PoisonError` whose field is
        ``topic`` or ``payload``), or None; asked only for messages beyond :meth:`message_bounds`."""
        problem = self.validate_topic(topic)
        if problem is not None:
            return PoisonError(problem, obj=self.config.label, field="topic")
        if len(payload) > MAX_PAYLOAD_BYTES:
            return PoisonError(
                f"the payload is {len(payload)} bytes; the broker takes at most {MAX_PAYLOAD_BYTES}",
                obj=self.config.label,
                field="payload",
            )
        return None

    @abstractmethod
    async def start(self) -> None:
        """Begin connecting; keep reconnecting with backoff until :meth:`close`."""

    @property
    @abstractmethod
    def connected(self) -> bool:
        """True while publishes can be sent."""

    @abstractmethod
    async def wait_connected(self) -> None:
        """Return once connected (raises a terminal BrokerError if it never can be)."""

    @abstractmethod
    def publish(self, topic: str, payload: bytes, qos: int, retain: bool) -> asyncio.Future[None]:
        """Send one message; the future resolves on acknowledgement (QoS >= 1) or acceptance
        (QoS 0), and fails with BrokerDisconnectedError if the connection drops first, with a
        PoisonError if the broker refuses it for good, with another BrokerError if it refuses it
        for now."""

    def publish_many(
        self, messages: Sequence[tuple[str, bytes]], qos: int, retain: bool
    ) -> asyncio.Future[None]:
        """Send ``(topic, payload)`` messages in order; one future for all of them: it resolves
        once every one is acknowledged (or accepted), and fails with the first failure (so
        the caller resends them all: at-least-once). A broker may track the messages more
        cheaply than one future each; this default publishes them one by one."""
        futures = [self.publish(topic, payload, qos, retain) for topic, payload in messages]
        return asyncio.gather(*futures)  # type: ignore[return-value]

    def publish_with_fields(
        self,
        messages: Sequence[tuple[str, bytes]],
        fields: Sequence[MessageFields],
        qos: int,
        retain: bool,
    ) -> asyncio.Future[None]:
        """:meth:`publish_many` with each message's envelope fields (``fields[i]`` is
        ``messages[i]``'s); asked only of a kind whose :attr:`wants_fields` is True."""
        return self.publish_many(messages, qos, retain)

    @abstractmethod
    async def close(self, timeout: float = 2.0) -> None:
        """Flush what can be flushed within ``timeout`` and disconnect."""

    @classmethod
    @abstractmethod
    async def test_connection(cls, config: BrokerConfig, secret: str | None) -> str:
        """Connect once and disconnect; return a summary or raise BrokerError."""
