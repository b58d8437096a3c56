"""The middlewares around a Django Channels URLRouter inside a ProtocolTypeRouter."""

from __future__ import annotations

import asyncio
import time

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.testing import WebsocketCommunicator
from django.urls import path

from asgi_ws import AuthMiddleware, OriginMiddleware, SubprotocolMiddleware
from asgi_ws.auth import Identity, SignedTicket, User
from tests.support.clients import opened, refusal
from tests.support.server import serve

ORIGIN = "https://app.example.com"
tickets = SignedTicket(["channels-test-key-0123456789"])
disconnects: list[int] = []


class ChatConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    async def connect(self) -> None:
        await self.accept()
        user = self.scope["user"]
        await self.send_json(
            {
                "user": user.identity,
                "authenticated": user.is_authenticated,
                "subprotocol": self.scope["asgi_ws"]["subprotocol"],
            }
        )

    async def receive_json(self, content, **kwargs) -> None:  # type: ignore[no-untyped-def]
        await self.send_json(content)

    async def disconnect(self, code: int) -> None:
        disconnects.append(code)


def make_application(expiring: bool = False) -> ProtocolTypeRouter:
    def short_lived(scope):  # type: ignore[no-untyped-def]
        return Identity(user=User("dave"), expires_at=time.time() + 0.5) if expiring else None

    return ProtocolTypeRouter(
        {
            "websocket": OriginMiddleware(
                AuthMiddleware(
                    SubprotocolMiddleware(URLRouter([path("ws/", ChatConsumer.as_asgi())]), supported=["chat.v2"]),
                    backend=[short_lived, tickets] if expiring else tickets,
                ),
                allow_origins=[ORIGIN],
            )
        }
    )


async def test_communicator_accepts_and_refuses() -> None:
    app = make_application()
    ok = WebsocketCommunicator(
        app, f"/ws/?ticket={tickets.issue('alice')}", headers=[(b"origin", ORIGIN.encode())], subprotocols=["chat.v2"]
    )
    connected, subprotocol = await ok.connect()
    assert connected and subprotocol == "chat.v2"
    assert await ok.receive_json_from() == {"user": "alice", "authenticated": True, "subprotocol": "chat.v2"}
    await ok.send_json_to({"n": 1})
    assert await ok.receive_json_from() == {"n": 1}
    await ok.disconnect()

    # Channels' test harness offers no denial extension: refusals are a close before accept.
    for query, origin in [
        (f"ticket={tickets.issue('a')}", b"https://evil.example"),
        ("ticket=forged", ORIGIN.encode()),
    ]:
        refused = WebsocketCommunicator(app, f"/ws/?{query}", headers=[(b"origin", origin)], subprotocols=["chat.v2"])
        connected, code = await refused.connect()
        assert not connected and code == 1008


async def test_channels_stack_through_uvicorn(ws_impl: str) -> None:
    disconnects.clear()
    async with serve(make_application(), ws=ws_impl) as server:
        url = server.ws_url("/ws/")
        async with opened(f"{url}?ticket={tickets.issue('bob')}", origin=ORIGIN, subprotocols=["chat.v2"]) as conn:
            assert conn.subprotocol == "chat.v2"
            assert '"user": "bob"' in await conn.recv()
        refused = await refusal(f"{url}?ticket=forged", origin=ORIGIN, subprotocols=["chat.v2"])
        assert (refused.status, refused.body) == (401, "invalid ticket")
        refused = await refusal(f"{url}?ticket={tickets.issue('bob')}", origin="https://evil.example")
        assert refused.status == 403

    async with serve(make_application(expiring=True), ws=ws_impl) as server:
        async with opened(server.ws_url("/ws/"), origin=ORIGIN, subprotocols=["chat.v2"]) as conn:
            await conn.recv()
            await asyncio.wait_for(conn.wait_closed(), 10)
            assert conn.close_code == 4401
        for _ in range(100):
            if 4401 in disconnects:
                break
            await asyncio.sleep(0.05)
    assert 4401 in disconnects


# -- Rooms in a Channels consumer ------------------------------------------------------------

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402

from asgi_ws import BackpressureMiddleware, Rooms  # noqa: E402

chat_rooms = Rooms()


class RoomConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    async def connect(self) -> None:
        await self.accept()
        await chat_rooms.join("lobby", self, meta={"name": self.scope["query_string"].decode()})

    async def receive(self, text_data=None, bytes_data=None) -> None:  # type: ignore[no-untyped-def]
        await chat_rooms.publish("lobby", text_data, exclude=self)


rooms_application = ProtocolTypeRouter(
    {"websocket": BackpressureMiddleware(URLRouter([path("chat/", RoomConsumer.as_asgi())]))}
)


async def test_rooms_in_a_channels_consumer(ws_impl: str) -> None:
    async with serve(rooms_application, ws=ws_impl) as server:
        async with opened(server.ws_url("/chat/?alice")) as alice, opened(server.ws_url("/chat/?bob")) as bob:
            for _ in range(100):
                if len(chat_rooms.members("lobby")) == 2:
                    break
                await asyncio.sleep(0.02)
            assert sorted(e.meta["name"] for e in chat_rooms.members("lobby")) == ["alice", "bob"]
            await alice.send("hello from a consumer")
            assert await asyncio.wait_for(bob.recv(), 5) == "hello from a consumer"
        for _ in range(100):  # leaving is automatic when the consumer's connection ends
            if not chat_rooms.members("lobby"):
                break
            await asyncio.sleep(0.02)
        assert chat_rooms.members("lobby") == []
