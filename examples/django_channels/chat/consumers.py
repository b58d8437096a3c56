"""The chat consumer: a room per URL, presence, announcements over the channel layer.

Room messages go through asgi_ws's Rooms (one broker publish, every member of every process
reached through its bounded queue); announcements come from Django code through the channel
layer (``group_send`` to the ``announcements`` group), as in any Channels project.
"""

from __future__ import annotations

import time
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from asgi_ws import Rooms
from asgi_ws.contrib.channels import RoomsConsumerMixin
from asgi_ws.rooms.presence import PresenceEvent

rooms = Rooms(getattr(settings, "ASGI_WS_ROOMS_BROKER", "memory://"))
MAX_TEXT = 1000


class ChatConsumer(RoomsConsumerMixin, AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    rooms = rooms
    groups = ("announcements",)  # Channels groups: group_send from Django code (views.announce)

    async def connect(self) -> None:
        # AuthMiddleware let only logged-in, active users this far: scope["user"] is a Django user.
        self.room = self.scope["url_route"]["kwargs"]["room"]
        self.username = self.scope["user"].get_username()
        await self.accept()
        # A resumed session is back in its room already (joining again changes nothing).
        await self.join_room(self.room, meta={"name": self.username})
        await self.send_json(
            {
                "type": "welcome",
                "user": self.username,
                "room": self.room,
                "resumed": self.resumed,
                "members": self.names(),
            }
        )

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        text = content.get("text") if isinstance(content, dict) and content.get("type") == "message" else None
        if not isinstance(text, str) or not text.strip():
            await self.send_json({"type": "error", "error": 'send {"type": "message", "text": "..."}'})
            return
        message = {"type": "message", "room": self.room, "user": self.username, "text": text.strip()[:MAX_TEXT]}
        await self.publish(self.room, {**message, "at": time.time()})

    async def room_presence(self, event: PresenceEvent) -> None:
        await self.send_json({"type": "presence", "room": self.room, "members": self.names()})

    async def announce(self, event: dict[str, Any]) -> None:
        """A ``group_send("announcements", {"type": "announce", ...})`` from Django code."""
        await self.send_json({"type": "announcement", "user": event["user"], "text": event["text"]})

    def names(self) -> list[str]:
        # A member restored by a resume in another process may have no meta: its user id then.
        return sorted({str(entry.meta.get("name") or f"user {entry.user}") for entry in self.room_members(self.room)})
