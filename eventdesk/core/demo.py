"""The first-run demo: accounts republished to ``/v1/subutest``, with no external server.

:func:`setup_demo` creates, through :class:`~eventdesk.core.home.Home`, a ``webhook``
datasource with model ``accounts``, the built-in MQTT broker and a route republishing to
``/v1/subutest`` in ``model-message`` format. :func:`send_samples` then posts a realistic stream of
account documents (creates, updates, deletes) to the webhook over real HTTP, the way any
other system announcing its changes would.

The core does not import the kinds (they sit above it), so the demo reads a webhook datasource's
and the broker's settings through the registry's typed settings, by what it needs of them
(:class:`ReceiverSettings`, :class:`ListenerSettings`).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import hmac
import random
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import orjson

from eventdesk.core.errors import ConnectorError
from eventdesk.core.home import Home
from eventdesk.core.object_configs import BrokerConfig, DatasourceConfig, ModelConfig
from eventdesk.core.registry import broker_class, connector_class
from eventdesk.core.retry_policy import Backoff, parse_retry_after
from eventdesk.core.secrets import resolve_secret
from eventdesk.core.workspace import RouteSettings

if TYPE_CHECKING:
    import aiohttp

DATASOURCE = "demo-webhook"
MODEL = "accounts"
BROKER = "builtin"
ROUTE = "accounts-to-subutest"
TOPIC = "/v1/subutest"
WEBHOOK_PORT = 8787
BROKER_PORT = 1883
HOST = "127.0.0.1"
SEND_TIMEOUT = 30.0
CONNECT_RETRIES = 10  # x CONNECT_RETRY_DELAY: how long a receiver may take to come up
CONNECT_RETRY_DELAY = 0.2
RETRY_STATUSES = (429, 503)  # the receiver asks to be sent again (later, if it says when)

_FIRST = ("Asha", "Ravi", "Meera", "Arjun", "Priya", "Kiran", "Sana", "Vikram", "Lena", "Tom", "Ines", "Omar")
_LAST = ("Rao", "Iyer", "Menon", "Shah", "Nair", "Kapoor", "Fischer", "Silva", "Haddad", "Novak", "Berg")
_REGIONS = ("Bangalore", "Pune", "Mumbai", "Chennai", "Delhi", "Hyderabad")
_PLANS = ("free", "standard", "premium")


@dataclass(frozen=True)
class DemoInfo:
    """Where the demo listens and publishes, and how to poke it from a shell."""

    webhook_url: str
    broker_host: str
    broker_port: int
    topic: str
    created: bool

    def curl_command(self) -> str:
        body = '{"id": "acc-9001", "name": "Asha Rao", "region": "Bangalore", "balance": 1200.5}'
        return f"curl -sS -X POST {self.webhook_url} -H 'Content-Type: application/json' -d '{body}'"

    def subscribe_command(self) -> str:
        return f"mosquitto_sub -h {self.broker_host} -p {self.broker_port} -t '{self.topic}' -v"


@runtime_checkable
class ListenerSettings(Protocol):
    """What the demo reads of a server's typed settings (a webhook datasource, the built-in broker)."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...


@runtime_checkable
class ReceiverSettings(ListenerSettings, Protocol):
    """What the demo reads of a webhook datasource's typed settings."""

    @property
    def signature_header(self) -> str: ...


@runtime_checkable
class PathSettings(Protocol):
    """What the demo reads of a webhook model's typed settings (empty: ``/hooks/<model>``)."""

    @property
    def path(self) -> str: ...


def receiver_settings(ds: DatasourceConfig) -> ReceiverSettings | None:
    """``ds``'s typed settings, if its kind receives by HTTP like the webhook kind (else None)."""
    typed = connector_class(ds.kind).datasource_settings.from_validated(ds.settings)
    return typed if isinstance(typed, ReceiverSettings) else None


def listener_settings(broker: BrokerConfig) -> ListenerSettings | None:
    """``broker``'s typed settings, if it is a server with a host and port (else None)."""
    typed = broker_class(broker.kind).settings_type.from_validated(broker.settings)
    return typed if isinstance(typed, ListenerSettings) else None


def model_path(ds: DatasourceConfig, model: ModelConfig) -> str:
    """The path ``model`` of a webhook datasource receives on."""
    typed = connector_class(ds.kind).model_settings.from_validated(model.settings)
    path = typed.path if isinstance(typed, PathSettings) else ""
    return path or f"/hooks/{model.name}"


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _pick_port(preferred: int, avoid: set[int]) -> int:
    """``preferred`` if free now, else a free port the OS hands out."""
    if preferred not in avoid and port_free(HOST, preferred):
        return preferred
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            return port


def demo_present(home: Home) -> bool:
    ws = home.workspace
    return DATASOURCE in ws.datasources and MODEL in ws.models


def setup_demo(home: Home, *, webhook_port: int | None = None, broker_port: int | None = None) -> DemoInfo:
    """Create the demo objects that are missing (ports: 8787 and 1883 if free, else free ones)."""
    ws = home.workspace
    created = False
    if DATASOURCE not in ws.datasources:
        port = webhook_port or _pick_port(WEBHOOK_PORT, set())
        home.add_datasource(DATASOURCE, "webhook", {"host": HOST, "port": port})
        created = True
    if MODEL not in ws.models:
        home.add_model(MODEL, DATASOURCE, {"path": f"/hooks/{MODEL}"})
        created = True
    if BROKER not in ws.brokers:
        receiver = receiver_settings(ws.datasource(DATASOURCE))
        used = set() if receiver is None else {receiver.port}
        port = broker_port or _pick_port(BROKER_PORT, used)
        home.add_broker(BROKER, "local", {"host": HOST, "port": port})
        created = True
    if ROUTE not in ws.routes:
        home.add_route(
            ROUTE, MODEL, BROKER, {"topic": TOPIC, "format": "model-message", "qos": 1, "enabled": True}
        )
        created = True
    return demo_info(home, created=created)


def demo_info(home: Home, *, created: bool = False) -> DemoInfo:
    ws = home.workspace
    broker = listener_settings(ws.broker(BROKER)) if BROKER in ws.brokers else None
    return DemoInfo(
        webhook_url=webhook_url(home, MODEL),
        broker_host=HOST if broker is None else broker.host,
        broker_port=BROKER_PORT if broker is None else broker.port,
        topic=RouteSettings.from_validated(ws.routes[ROUTE].settings).topic if ROUTE in ws.routes else TOPIC,
        created=created,
    )


def webhook_url(home: Home, model: str) -> str:
    """The URL a webhook model receives on (its datasource's host and port, its path)."""
    ws = home.workspace
    m = ws.model(model)
    ds = ws.datasource(m.datasource)
    receiver = receiver_settings(ds) if ds.kind == "webhook" else None
    if receiver is None:
        raise ConnectorError("not a webhook model", obj=m.label, field="datasource")
    host = receiver.host
    if host in ("0.0.0.0", "::"):  # noqa: S104 - a listen address: send to loopback
        host = "127.0.0.1"
    return f"http://{host}:{receiver.port}{model_path(ds, m)}"


# -- the sample stream ----------------------------------------------------------------------


def sample_documents(count: int, *, seed: int | None = None, start: int = 1) -> Iterator[dict[str, Any]]:
    """``count`` account changes: mostly creates at first, then updates, a few deletes.

    Each document carries ``op`` (the webhook's default op field) and ``id`` (its key field).
    Keys are ``acc-<n>``; every update or delete is of an account created earlier in the stream.
    """
    rnd = random.Random(seed)
    live: dict[str, dict[str, Any]] = {}
    next_id = start
    clock = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC)
    for _ in range(count):
        clock += timedelta(milliseconds=rnd.randint(40, 900))
        stamp = clock.strftime("%Y-%m-%dT%H:%M:%S.") + f"{clock.microsecond // 1000:03d}Z"
        roll = rnd.random()
        if not live or roll < max(0.15, 0.6 - len(live) / 40):
            key = f"acc-{next_id:05d}"
            next_id += 1
            first, last = rnd.choice(_FIRST), rnd.choice(_LAST)
            doc: dict[str, Any] = {
                "id": key,
                "op": "created",
                "name": f"{first} {last}",
                "email": f"{first.lower()}.{last.lower()}{rnd.randint(1, 99)}@example.com",
                "region": rnd.choice(_REGIONS),
                "plan": rnd.choice(_PLANS),
                "balance": round(rnd.uniform(0, 5000), 2),
                "currency": "INR",
                "status": "active",
                "version": 1,
                "updated_at": stamp,
            }
            live[key] = doc
            yield dict(doc)
        elif roll < 0.93 or len(live) < 3:
            key = rnd.choice(sorted(live))
            doc = dict(live[key])
            doc["op"] = "updated"
            change = rnd.random()
            if change < 0.6:
                doc["balance"] = round(max(0.0, doc["balance"] + rnd.uniform(-800, 1200)), 2)
            elif change < 0.8:
                doc["plan"] = rnd.choice([p for p in _PLANS if p != doc["plan"]])
            elif change < 0.9:
                doc["region"] = rnd.choice([r for r in _REGIONS if r != doc["region"]])
            else:
                doc["status"] = "suspended" if doc["status"] == "active" else "active"
            doc["version"] += 1
            doc["updated_at"] = stamp
            live[key] = doc
            yield dict(doc)
        else:
            key = rnd.choice(sorted(live))
            doc = live.pop(key)
            yield {"id": key, "op": "deleted", "version": doc["version"] + 1, "updated_at": stamp}


@dataclass(frozen=True)
class SendResult:
    sent: int
    accepted: int
    rejected: int


def _signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def send_documents(
    url: str,
    docs: list[dict[str, Any]],
    *,
    secret: str | None = None,
    signature_header: str = "X-Hub-Signature-256",
    concurrency: int = 4,
    obj: str = f"datasource {DATASOURCE!r}",
) -> SendResult:
    """POST each document to ``url`` (one request each), ``concurrency`` at a time.

    Changes of one key go through one sender, in stream order. Raises ConnectorError naming
    ``port`` when nothing listens at ``url``.
    """
    import aiohttp  # here, not at module level: the window imports this module at launch

    lanes: list[list[bytes]] = [[] for _ in range(max(1, concurrency))]
    for doc in docs:
        lane = int(hashlib.blake2s(str(doc.get("id")).encode(), digest_size=4).hexdigest(), 16)
        lanes[lane % len(lanes)].append(orjson.dumps(doc))
    accepted = rejected = 0

    async def post(session: aiohttp.ClientSession, body: bytes, headers: dict[str, str]) -> int:
        # Like any webhook sender, retry while the receiver is still coming up or asks for it
        # (not sooner than its Retry-After says).
        backoff = Backoff(initial=CONNECT_RETRY_DELAY, cap=CONNECT_RETRY_DELAY, jitter=0.0)
        for attempt in range(CONNECT_RETRIES + 1):
            retry_after = None
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status not in RETRY_STATUSES or attempt == CONNECT_RETRIES:
                        return resp.status
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            except aiohttp.ClientConnectorError:
                if attempt == CONNECT_RETRIES:
                    raise
            await asyncio.sleep(backoff.next_delay(retry_after))
        raise AssertionError("unreachable")  # pragma: no cover

    async def lane_sender(session: aiohttp.ClientSession, bodies: list[bytes]) -> None:
        nonlocal accepted, rejected
        for body in bodies:
            headers = {"Content-Type": "application/json"}
            if secret:
                headers[signature_header] = _signature(secret, body)
            if await post(session, body, headers) == 200:
                accepted += 1
            else:
                rejected += 1

    timeout = aiohttp.ClientTimeout(total=SEND_TIMEOUT)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(*(lane_sender(session, lane) for lane in lanes if lane))
    except aiohttp.ClientConnectorError:
        raise ConnectorError(
            f"nothing listens on {url}; start the model first (the app, or `eventdesk run`)",
            obj=obj,
            field="port",
        ) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ConnectorError(
            f"sending to {url} failed: {type(exc).__name__}: {exc}", obj=obj, field="port"
        ) from None
    return SendResult(sent=len(docs), accepted=accepted, rejected=rejected)


async def send_samples(
    home: Home, count: int, *, model: str = MODEL, seed: int | None = None, concurrency: int = 4
) -> SendResult:
    """Post ``count`` sample account changes to ``model``'s webhook (signed if it has a secret)."""
    ws = home.workspace
    ds = ws.datasource(ws.model(model).datasource)
    url = webhook_url(home, model)
    receiver = receiver_settings(ds)
    assert receiver is not None  # webhook_url checked the kind
    loop = asyncio.get_running_loop()
    secret = await loop.run_in_executor(None, resolve_secret, ds.secret, ds.label)
    start = home.capture.count(model) + 1  # fresh keys on every send, so creates stay creates
    docs = list(sample_documents(count, seed=seed, start=start))
    return await send_documents(
        url,
        docs,
        secret=secret,
        signature_header=receiver.signature_header,
        concurrency=concurrency,
        obj=ds.label,
    )
