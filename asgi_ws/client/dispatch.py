"""What the client does with each control message from the server: a table of handlers by operation.

As the server's :class:`~asgi_ws.control.ControlRouter` does, every handler is a plain function
of ``(link, message)`` (``link``: the :class:`~asgi_ws.client.connection.Link` of the socket the
message came on), sync or async; an operation without one becomes a ``control`` event for the
application (``presence_diff``, answers to ``send_control``...).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeGuard

from ..protocol import decode_batch
from .policy import MIN_HEARTBEAT
from .resume import resume_mismatch

if TYPE_CHECKING:
    from .connection import Link

logger = logging.getLogger("asgi_ws.client")

Handler = Callable[["Link", dict[str, Any]], "Awaitable[None] | None"]


async def _ping(link: Link, message: dict[str, Any]) -> None:
    await link.control("pong", {"id": message["id"]} if "id" in message else None)


def _pong(link: Link, message: dict[str, Any]) -> None:
    if link.ping_sent_at is not None and message.get("id") == link.ping_id:
        link.client.rtt = link.now() - link.ping_sent_at
    link.ping_sent_at = None


def _welcome(link: Link, message: dict[str, Any]) -> None:
    client = link.client
    features = message.get("features")
    client.features = dict(features) if isinstance(features, dict) else {}
    heartbeat = client.features.get("heartbeat")
    if client._settings.heartbeat and isinstance(heartbeat, dict):
        interval, timeout = heartbeat.get("interval"), heartbeat.get("timeout")
        if _positive(interval) and _positive(timeout):  # never more often than MIN_HEARTBEAT
            link.hb = (max(float(interval), MIN_HEARTBEAT), max(float(timeout), MIN_HEARTBEAT))


def _session(link: Link, message: dict[str, Any]) -> None:
    link.client._resume.on_session(message)


async def _resumed(link: Link, message: dict[str, Any]) -> None:
    resume = link.client._resume
    mismatch = resume_mismatch(message, resume.received)
    if mismatch is not None:  # a broken server: frames were missed, or will come twice
        logger.warning("asgi_ws client: %s", mismatch)
        link.client._events.emit("error", code="resume_mismatch", reason=mismatch, detail=message)
    rooms = resume.on_resumed(message)
    link.client._events.emit("resumed", detail=message)
    await link.restore(restored=rooms)


async def _resume_failed(link: Link, message: dict[str, Any]) -> None:
    code, reason = str(message.get("code", "")), str(message.get("reason", ""))
    logger.info("asgi_ws client: resume failed (%s): %s", code, reason)
    if link.client._resume.on_resume_failed():  # (a new session the store could not create lost nothing)
        link.client._events.emit("resume_failed", code=code, reason=reason, detail=message)
        await link.restore(restored=())


def _error(link: Link, message: dict[str, Any]) -> None:
    client = link.client
    code, text, ref = str(message.get("code", "")), str(message.get("message", "")), message.get("ref")
    logger.warning("asgi_ws client: server error %s: %s%s", code, text, f" (ref {ref})" if ref else "")
    client._events.emit("error", code=code, reason=text, detail=message)
    key = client._requests.refused(ref, code, text)  # the server answers in order: the oldest one failed
    if ref == "subscribe" and isinstance(key, str):
        client._subscriptions.pop(key, None)


def _subscribed(link: Link, message: dict[str, Any]) -> None:
    _answered(link, "subscribe", message)


def _unsubscribed(link: Link, message: dict[str, Any]) -> None:
    _answered(link, "unsubscribe", message)


def _answered(link: Link, op: Literal["subscribe", "unsubscribe"], message: dict[str, Any]) -> None:
    channel = message.get("channel")
    if not isinstance(channel, str):  # answers no request (a list or an object would not even be a key)
        logger.warning("asgi_ws client: ignored a %r message whose channel is not a string", message["$ws"])
        return
    link.client._requests.answered(op, channel, message)


def _published(link: Link, message: dict[str, Any]) -> None:
    link.client._requests.answered("publish", message.get("id"), message)


async def _batch(link: Link, message: dict[str, Any]) -> None:
    """A batch frame: its messages are data frames, one by one, in order (docs/protocol.md, "Batches")."""
    texts = decode_batch(message)
    if texts is None:
        logger.warning("asgi_ws client: ignored a batch frame that holds something else than messages")
        return
    for text in texts:
        await link.data(text)


def _other(link: Link, message: dict[str, Any]) -> None:
    link.client._events.emit("control", detail=message)


#: The handler of each operation the client acts on.
HANDLERS: Mapping[str, Handler] = {
    "ping": _ping,
    "pong": _pong,
    "welcome": _welcome,
    "session": _session,
    "resumed": _resumed,
    "resume_failed": _resume_failed,
    "error": _error,
    "subscribed": _subscribed,
    "unsubscribed": _unsubscribed,
    "published": _published,
    "batch": _batch,
}


async def dispatch(link: Link, message: dict[str, Any]) -> None:
    """Handle one decoded control message received on ``link``."""
    result = HANDLERS.get(message["$ws"], _other)(link, message)
    if inspect.isawaitable(result):
        await result


def _positive(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


__all__ = ["HANDLERS", "Handler", "dispatch"]
