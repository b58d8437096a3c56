"""A tiny Channels application on BrokerChannelLayer, served by real server processes (uvicorn, daphne) in
``test_servers.py``. The layer's URL and prefix come from ``LAYER_URL`` and ``LAYER_PREFIX``.

- ``/ws/``: an ``AsyncWebsocketConsumer`` in group ``room``; it says ``joined <channel>`` once its
  membership is in effect and forwards every ``chat.message`` of the group as a text frame.
- ``GET /send?text=...``: ``group_send`` to ``room`` from this process; answers ``sent``.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs

from tests.support import django as test_django

# This server process's own Django configuration: the suite's, with this layer.
layer = {"url": os.environ.get("LAYER_URL", "memory://"), "prefix": os.environ.get("LAYER_PREFIX", "channels")}
test_django.SETTINGS["CHANNEL_LAYERS"] = {
    "default": {"BACKEND": "asgi_ws.contrib.channels.BrokerChannelLayer", "CONFIG": layer}
}
test_django.setup()  # before Channels is imported

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402
from channels.routing import ProtocolTypeRouter  # noqa: E402

from asgi_ws.types import Receive, Scope, Send  # noqa: E402


class Member(AsyncWebsocketConsumer):  # type: ignore[misc]
    groups = ["room"]  # noqa: RUF012 - joined before connect() runs

    async def connect(self) -> None:
        await self.accept()
        await self.send(text_data=f"joined {self.channel_name}")

    async def chat_message(self, event: dict[str, str]) -> None:
        await self.send(text_data=event["text"])


async def http(scope: Scope, receive: Receive, send: Send) -> None:
    while (await receive()).get("more_body"):
        pass
    text = parse_qs(scope["query_string"].decode()).get("text", [""])[0]
    await get_channel_layer().group_send("room", {"type": "chat.message", "text": text})
    body = b"sent"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"4")]})
    await send({"type": "http.response.body", "body": body})


app = ProtocolTypeRouter({"http": http, "websocket": Member.as_asgi()})
