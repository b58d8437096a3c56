"""Shared by these tests: a consumer reporting what the handshake gave it, and frame readers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from asgiref.sync import sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.routing import URLRouter
from django.urls import path

from tests.support.clients import opened

ORIGIN = "https://app.example.com"


class WhoAmI(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """Reports what the handshake middlewares gave it."""

    created = 0  # consumers instantiated: a refused handshake must not create one

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        type(self).created += 1
        super().__init__(*args, **kwargs)

    async def connect(self) -> None:
        from django.contrib.auth.base_user import AbstractBaseUser

        await self.accept()
        user = self.scope["user"]
        session = self.scope.get("session")
        await self.send_json(
            {
                "user": user.get_username() if user.is_authenticated else None,
                "django_user": isinstance(user, AbstractBaseUser),
                "anonymous_class": type(user).__module__ if not user.is_authenticated else None,
                "session_user": None if session is None else await sync_to_async(session.get)("_auth_user_id"),
                "backend": self.scope["auth"].backend if "auth" in self.scope else None,
                "subprotocol": self.scope.get("asgi_ws", {}).get("subprotocol"),
            }
        )


websocket_urlpatterns = [path("ws/", WhoAmI.as_asgi())]
ROUTER = URLRouter(websocket_urlpatterns)


async def report(url: str, cookie: str | None = None, *, origin: str = ORIGIN, **kwargs: Any) -> dict[str, Any]:
    """Connect (with the ``sessionid`` cookie) and return what WhoAmI reported."""
    headers = {"cookie": f"sessionid={cookie}"} if cookie else {}
    async with opened(url, origin=origin, additional_headers=headers, **kwargs) as conn:
        return dict(json.loads(await conn.recv()))


class Frames:
    """Reads JSON frames of one connection; counts the data frames (``ws_seq`` of a resume)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.data = 0

    async def next(self) -> dict[str, Any]:
        frame = json.loads(await asyncio.wait_for(self.conn.recv(), 10))
        if "$ws" not in frame:
            self.data += 1
        return dict(frame)

    async def until(self, wanted: Any, what: str) -> dict[str, Any]:
        """The first frame for which ``wanted(frame)`` holds (at most 50 frames, 10 s each)."""
        seen = []
        for _ in range(50):
            frame = await self.next()
            if wanted(frame):
                return frame
            seen.append(frame)
        raise AssertionError(f"never received {what}: {seen}")

    async def first(self, kind: str) -> dict[str, Any]:
        """The next application message of type ``kind``."""
        return await self.until(lambda frame: frame.get("type") == kind, f"a {kind!r} message")
