"""Django Channels: ``AsyncWebsocketConsumer`` members in group ``bench``, trigger = ``group_send``.

The channel layer is chosen by ``FANOUT_CHANNEL_LAYER``: ``memory`` (InMemoryChannelLayer),
``redis`` (channels_redis RedisChannelLayer, default settings), ``pubsub``
(channels_redis RedisPubSubChannelLayer), ``broker-memory`` / ``broker-redis`` (asgi_ws's
BrokerChannelLayer on memory:// / Redis; run ``broker-redis`` in several processes); Redis at
``FANOUT_REDIS_HOST`` (default ``redis://127.0.0.1:6379/0``) with key prefix ``FANOUT_PREFIX``.
Django is configured in code. ``FANOUT_CONSUMER_DISPATCH=nodb``: the consumers' ``dispatch`` calls
the handler without Channels' per-message ``aclose_old_connections()`` (a thread hop through
``sync_to_async`` to close stale database connections), to measure what that hop costs;
``FANOUT_CONSUMER_DISPATCH=lean``: the consumers are ``LeanDispatchMixin`` ones (no database
here, so its default policy makes no hop; its own dispatch loop, the layer's reader on
BrokerChannelLayer). ``FANOUT_GC_STATS=1``: each ``/trigger`` writes to stderr the garbage
collector's time since the previous one (the previous round), from ``gc.callbacks``.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from typing import Any

import django
from django.conf import settings

LAYER = os.environ.get("FANOUT_CHANNEL_LAYER", "memory")
_HOST = os.environ.get("FANOUT_REDIS_HOST", "redis://127.0.0.1:6379/0")
_PREFIX = os.environ.get("FANOUT_PREFIX", "fanout")
_BROKER_LAYER = "asgi_ws.contrib.channels.BrokerChannelLayer"
DISPATCH = os.environ.get("FANOUT_CONSUMER_DISPATCH", "stock")  # stock, nodb, lean
LAYERS = {
    "memory": {"BACKEND": "channels.layers.InMemoryChannelLayer"},
    "redis": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [_HOST], "prefix": _PREFIX}},
    "pubsub": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [_HOST], "prefix": _PREFIX},
    },
    "broker-memory": {"BACKEND": _BROKER_LAYER, "CONFIG": {"url": "memory://"}},
    "broker-redis": {"BACKEND": _BROKER_LAYER, "CONFIG": {"url": _HOST, "prefix": _PREFIX}},
}

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="fanout-bench",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["channels"],
        CHANNEL_LAYERS={"default": LAYERS[LAYER]},
    )
    django.setup()

from channels.consumer import get_handler_name  # noqa: E402
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402
from channels.routing import ProtocolTypeRouter  # noqa: E402

from asgi_ws.contrib.channels import LeanWebsocketConsumer  # noqa: E402
from asgi_ws.types import Receive, Scope, Send  # noqa: E402

from ._common import GROUP, drain_request, message, respond, tag_of  # noqa: E402

members = 0
gc_stats = {"seconds": 0.0, "collections": 0, "full": 0, "started": 0.0}


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        gc_stats["started"] = time.perf_counter()
    else:
        gc_stats["seconds"] += time.perf_counter() - gc_stats["started"]
        gc_stats["collections"] += 1
        gc_stats["full"] += info["generation"] == 2


if os.environ.get("FANOUT_GC_STATS"):
    gc.callbacks.append(_on_gc)


class Member(LeanWebsocketConsumer if DISPATCH == "lean" else AsyncWebsocketConsumer):  # type: ignore[misc]
    groups = [GROUP]  # noqa: RUF012 - joined before connect() runs

    async def connect(self) -> None:
        global members
        await self.accept()
        members += 1

    async def disconnect(self, code: int) -> None:
        global members
        members -= 1

    async def bench_message(self, event: dict[str, str]) -> None:
        await self.send(text_data=event["text"])

    if DISPATCH == "nodb":

        async def dispatch(self, message: dict[str, str]) -> None:
            # AsyncConsumer.dispatch without `await aclose_old_connections()` (no database here).
            await getattr(self, get_handler_name(message))(message)


async def http(scope: Scope, receive: Receive, send: Send) -> None:
    await drain_request(receive)
    if scope["path"] == "/trigger":
        if os.environ.get("FANOUT_GC_STATS"):
            print(
                f"channels_group {os.getpid()}: gc since the last trigger: {gc_stats['seconds'] * 1000:.1f} ms, "
                f"{gc_stats['collections']} collections ({gc_stats['full']} full)",
                file=sys.stderr,
                flush=True,
            )
            gc_stats.update(seconds=0.0, collections=0, full=0)
        layer = get_channel_layer()
        start = time.perf_counter()
        await layer.group_send(GROUP, {"type": "bench.message", "text": message(tag_of(scope))})
        await respond(send, f"{members} {time.perf_counter() - start:.6f}")
    else:
        await respond(send, str(members))


app = ProtocolTypeRouter({"http": http, "websocket": Member.as_asgi()})
