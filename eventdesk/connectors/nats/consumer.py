"""A model's durable JetStream pull consumer: found, or made, so that it starts right after the
capture's checkpoint.

The capture's checkpoint (the last stream sequence committed) is the truth; the consumer's ack
floor follows it (messages are acked, ack policy *all*, only once the capture committed them).
The consumer is kept when its ack floor is the checkpoint and nothing is pending on it;
otherwise (a run killed between a commit and its ack, messages delivered to a dead process and
not acked, another filter subject, a first run) it is made again to start at the checkpoint + 1
(or at ``since``: the stream's first message, or new ones). So a restart neither waits for the
server's ack timeout nor reads a message twice, and messages arrive in stream order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import nats.js.api
import nats.js.errors
from nats.js.client import JetStreamContext

from eventdesk.clients.nats.errors import JS_STREAM_NOT_FOUND
from eventdesk.connectors.nats import errors
from eventdesk.connectors.nats.settings import NatsModelSettings, consumer_name
from eventdesk.core.object_configs import DatasourceConfig, ModelConfig

log = logging.getLogger(__name__)

ACK_WAIT = 60.0  # seconds a fetched message may wait for its commit before the server resends it


@dataclass(frozen=True)
class ConsumerPlan:
    """Where one model's consumer is and what it reads."""

    stream: str
    name: str
    subject: str  # the filter subject ("" : the whole stream)
    model: str  # the model's label, for messages
    description: str

    @classmethod
    def of(cls, datasource: DatasourceConfig, model: ModelConfig, cfg: NatsModelSettings) -> ConsumerPlan:
        """The consumer of ``model``, named from its workspace's id (``datasource.workspace_id``,
        as postgres names its slots), so that every runner of the workspace, and ``eventdesk
        remove --drop-slot``, find the same one."""
        return cls(
            stream=cfg.stream,
            name=consumer_name(datasource.workspace_id, datasource.name, model.name),
            subject=cfg.subject,
            model=model.label,
            description=f"EventDesk model {model.name!r} of datasource {datasource.name!r}",
        )


async def prepare_consumer(
    js: JetStreamContext, plan: ConsumerPlan, checkpoint: int | None, since: str, where: str
) -> str:
    """Make sure the consumer exists and starts after ``checkpoint``; a summary of what was done."""
    try:
        info = await js.stream_info(plan.stream)
    except Exception as exc:
        raise errors.stream_error(exc, plan.model, plan.stream, where) from None
    last = int(info.state.last_seq or 0)
    if checkpoint is not None and checkpoint > last:
        raise errors.checkpoint_gone(plan.model, plan.stream, checkpoint, last)
    try:
        current = await js.consumer_info(plan.stream, plan.name)
    except nats.js.errors.NotFoundError:
        current = None
    except Exception as exc:
        raise errors.stream_error(exc, plan.model, plan.stream, where) from None
    if current is not None and checkpoint is not None and _resumes_at(current, plan, checkpoint):
        return f"consumer {plan.name} resumes after sequence {checkpoint}"
    try:
        if current is not None:
            await js.delete_consumer(plan.stream, plan.name)
        await js.add_consumer(plan.stream, _config(plan, checkpoint, since))
    except Exception as exc:
        raise errors.stream_error(exc, plan.model, plan.stream, where) from None
    start = f"after sequence {checkpoint}" if checkpoint is not None else ("at 0" if since == "0" else "now")
    log.info("%s: %s consumer %s on stream %s, %s", plan.model, "made again" if current else "made", plan.name,
             plan.stream, start)  # fmt: skip
    return f"consumer {plan.name} starts {start}"


async def delete_consumer(js: JetStreamContext, plan: ConsumerPlan, where: str) -> str:
    """Delete the consumer (a model removed with ``--drop-slot``); a summary."""
    try:
        await js.delete_consumer(plan.stream, plan.name)
    except nats.js.errors.NotFoundError as exc:
        if getattr(exc, "err_code", None) == JS_STREAM_NOT_FOUND:
            return f"stream {plan.stream!r} is gone, and with it consumer {plan.name}: nothing to drop"
        return f"consumer {plan.name} of stream {plan.stream!r} was not there: nothing to drop"
    except Exception as exc:
        raise errors.stream_error(exc, plan.model, plan.stream, where) from None
    log.info("%s: deleted consumer %s of stream %s", plan.model, plan.name, plan.stream)
    return f"deleted JetStream consumer {plan.name} of stream {plan.stream!r}"


def _resumes_at(info: nats.js.api.ConsumerInfo, plan: ConsumerPlan, checkpoint: int) -> bool:
    floor = info.ack_floor.stream_seq if info.ack_floor is not None else -1
    return (
        floor == checkpoint
        and not info.num_ack_pending
        and (info.config.filter_subject or "") == plan.subject
        and info.config.ack_policy == nats.js.api.AckPolicy.ALL
    )


def _config(plan: ConsumerPlan, checkpoint: int | None, since: str) -> nats.js.api.ConsumerConfig:
    policy = nats.js.api.DeliverPolicy
    if checkpoint is not None:
        deliver, start = policy.BY_START_SEQUENCE, checkpoint + 1
    else:
        deliver, start = (policy.ALL if since == "0" else policy.NEW), None
    return nats.js.api.ConsumerConfig(
        durable_name=plan.name,
        description=plan.description,
        deliver_policy=deliver,
        opt_start_seq=start,
        ack_policy=nats.js.api.AckPolicy.ALL,
        ack_wait=ACK_WAIT,
        filter_subject=plan.subject or None,
    )
