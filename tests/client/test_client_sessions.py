"""The client when the server's store loses its session (4404), and its heartbeat after a ping
that could not be sent. Real uvicorn, real ResumeMiddleware and HeartbeatMiddleware."""

from __future__ import annotations

from typing import Any

from asgi_ws import HeartbeatMiddleware
from asgi_ws.client import Event, connect
from asgi_ws.resume import MemorySessionStore
from tests.client.apps import echo
from tests.client.conftest import until
from tests.client.test_client_resume import FAST, of, on_demand, recording, resumable
from tests.support.server import serve


async def test_a_session_lost_by_the_store_is_replaced_by_a_new_one_and_the_app_is_told() -> None:
    events: list[Event] = []
    store = MemorySessionStore()
    mw = resumable(on_demand, store=store)
    async with serve(mw) as server:
        async with connect(server.ws_url(), backoff=FAST, on_event=events.append) as client:
            await client.send("more 3")
            assert [await client.recv() for _ in range(3)] == ["1", "2", "3"]
            lost = client.session_id
            store._records.clear()  # a FLUSHALL, an eviction, a restart without persistence
            await client.send("more 2")  # the server cannot store these: it closes with 4404
            await until(lambda: bool(of(events, "session_lost")))
            await until(lambda: client.session_id not in (None, lost))
            await client.send("more 2")
            assert [await client.recv() for _ in range(2)] == ["1", "2"]  # the new session counts from 1
            assert client.received == 2
    session_lost = of(events, "session_lost")[0]
    assert (session_lost.code, session_lost.reason) == (4404, "session lost by the store")
    kinds = [e.kind for e in events]
    assert kinds[kinds.index("session_lost") - 1 :][:4] == ["disconnected", "session_lost", "reconnecting", "connected"]
    assert not of(events, "resume_failed")  # it asked for a new session: no resume to refuse
    assert of(events, "disconnected")[0].code == 4404
    await mw.close()


async def test_the_heartbeat_stays_armed_after_a_ping_that_failed_to_send() -> None:
    inbound: list[dict[str, Any]] = []
    app = recording(HeartbeatMiddleware(echo, interval=0.2, timeout=0.3), inbound)
    async with serve(app) as server:
        async with connect(server.ws_url(), backoff=FAST) as client:
            await until(lambda: "heartbeat" in client.features)  # the server's welcome arms the client's heartbeat
            link = client._link
            assert link is not None
            ws = link.ws
            send, failed = ws.send, []

            async def send_failing_once(message: Any, *args: Any) -> None:
                if not failed and isinstance(message, str) and message.startswith('{"$ws":"ping"'):
                    failed.append(message)
                    raise RuntimeError("cannot send now")  # e.g. websockets' ConcurrencyError
                await send(message, *args)

            ws.send = send_failing_once  # type: ignore[method-assign]
            await until(lambda: bool(failed))
            await until(lambda: any(m["$ws"] == "ping" for m in inbound))  # the next ping went out
            await until(lambda: client.rtt is not None)  # and was answered, on the same connection
            assert client._link is link
