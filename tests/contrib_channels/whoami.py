"""A consumer reporting what the handshake middlewares gave it, and a client reading the report."""

from __future__ import annotations

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
