"""The per-connection shell: library-initiated close, as the app and the server see it."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.testing import ApplicationCommunicator

from asgi_ws import ConnectionClosed, connection_of
from asgi_ws.connection import Connection, attach
from asgi_ws.types import Message, Receive, Scope, Send
from tests.support.apps import Probe, echo_app
from tests.support.asgi import ws_scope


def closing_layer(app, *, after: float, code: int = 4999, reason: str = "test close"):  # type: ignore[no-untyped-def]
    """A minimal session layer: closes every connection ``after`` seconds past accept."""

    async def layer(scope: Scope, receive: Receive, send: Send) -> None:
        scope = dict(scope)
        conn, receive, send = attach(scope, receive, send)
        conn.on_accept(lambda: conn.call_at_wall_time(time.time() + after, lambda: conn.close(code, reason)))
        await conn.run(app, scope, receive, send)

    return layer


async def test_library_close_reaches_server_and_app() -> None:
    probe = Probe()
    comm = ApplicationCommunicator(closing_layer(echo_app(probe), after=0.05), ws_scope())
    await comm.send_input({"type": "websocket.connect"})
    assert (await comm.receive_output(1))["type"] == "websocket.accept"
    await comm.receive_output(1)  # the scope description
    close = await comm.receive_output(2)
    assert close == {"type": "websocket.close", "code": 4999, "reason": "test close"}
    # The server reports the disconnect (with whatever code); the app sees the library's.
    await comm.send_input({"type": "websocket.disconnect", "code": 1006})
    await comm.wait(2)
    assert probe.disconnects == [{"type": "websocket.disconnect", "code": 4999, "reason": "test close"}]
    assert isinstance(probe.send_errors[0], ConnectionClosed)


async def test_sends_after_library_close_raise_and_app_close_is_swallowed() -> None:
    scope = ws_scope()
    sent: list[Message] = []

    async def server_send(message: Message) -> None:
        sent.append(message)

    async def server_receive() -> Message:
        await asyncio.sleep(3600)
        raise AssertionError

    conn, receive, send = attach(scope, server_receive, server_send)
    await send({"type": "websocket.accept"})
    assert conn.accepted
    conn.close(4000, "x" * 300)
    conn.close(4001, "ignored: first close wins")
    await asyncio.sleep(0)
    assert sent[-1] == {"type": "websocket.close", "code": 4000, "reason": "x" * 123}
    with pytest.raises(ConnectionClosed) as info:
        await send({"type": "websocket.send", "text": "late"})
    assert info.value.code == 4000
    await send({"type": "websocket.close", "code": 1000})  # the app's own close is moot, not an error
    assert len(sent) == 2


async def test_a_library_close_abandons_a_write_blocked_on_the_client() -> None:
    written: list[Message] = []
    buffer_full = asyncio.Event()

    async def server_send(message: Message) -> None:
        if message["type"] == "websocket.send":
            await buffer_full.wait()  # the client stopped reading: the write cannot proceed
        written.append(message)

    conn, receive, send = attach(ws_scope(), server_receive_never, server_send)
    await send({"type": "websocket.accept"})
    stuck = asyncio.create_task(send({"type": "websocket.send", "text": "x"}))
    await asyncio.sleep(0)
    assert not stuck.done()  # without limits the app waits for its write, as on the server
    conn.close(4408, "gone")
    with pytest.raises(ConnectionClosed):
        await stuck  # abandoned, not silently reported as written
    await asyncio.sleep(0.01)
    assert [m["type"] for m in written] == ["websocket.accept", "websocket.close"]
    with pytest.raises(ConnectionClosed):
        await send({"type": "websocket.send", "text": "late"})


async def test_a_servers_runtime_error_unrelated_to_our_close_is_not_masked() -> None:
    async def server_send(message: Message) -> None:
        raise RuntimeError("Expected ASGI message 'websocket.accept'")

    _, _, send = attach(ws_scope(), server_receive_never, server_send)
    with pytest.raises(RuntimeError, match="Expected ASGI message"):
        await send({"type": "websocket.send", "text": "x"})


async def server_receive_never() -> Message:
    await asyncio.sleep(3600)
    raise AssertionError


async def test_one_connection_per_socket_whatever_the_number_of_layers() -> None:
    seen: list[Connection | None] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(connection_of(scope))
        await receive()
        await send({"type": "websocket.accept"})
        await receive()

    stack = closing_layer(closing_layer(app, after=60), after=60)
    comm = ApplicationCommunicator(stack, ws_scope())
    await comm.send_input({"type": "websocket.connect"})
    await comm.receive_output(1)
    await comm.send_input({"type": "websocket.disconnect", "code": 1000})
    await comm.wait(1)
    (conn,) = seen
    assert conn is not None and conn.ended and not conn._timers


async def test_hooks_after_the_fact_run_at_once() -> None:
    conn = Connection(ws_scope(), server_receive_never, lambda m: asyncio.sleep(0))  # type: ignore[arg-type,return-value]
    conn.accepted = True
    ran: list[str] = []
    conn.on_accept(lambda: ran.append("accept"))
    conn._end()
    conn.on_end(lambda: ran.append("end"))
    conn.close(4000, "after end: ignored")
    assert ran == ["accept", "end"] and conn.close_code is None


def test_connection_of_outside_a_stack() -> None:
    assert connection_of(ws_scope()) is None


async def test_a_server_cancelling_the_wait_for_the_close_frame_ends_the_connection_quietly() -> None:
    """uvicorn cancels every connection's task once its graceful-shutdown timeout passes: a
    connection whose application had finished, waiting for its close frame to be written to a
    client that stopped reading, ends without raising (no traceback per connection)."""
    never = asyncio.Event()

    async def server_send(message: Message) -> None:
        if message["type"] == "websocket.close":
            await never.wait()  # the client stopped reading: the close frame cannot be written

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        connection_of(scope).close(1001, "server shutting down")  # type: ignore[union-attr]
        assert (await receive())["type"] == "websocket.disconnect"

    inbox: asyncio.Queue[Message] = asyncio.Queue()
    inbox.put_nowait({"type": "websocket.connect"})
    scope = ws_scope()
    conn, receive, send = attach(scope, inbox.get, server_send)
    task = asyncio.create_task(conn.run(app, scope, receive, send))
    await asyncio.sleep(0.05)
    assert not task.done()  # waiting for the close frame (up to CLOSE_TIMEOUT)
    task.cancel("Task cancelled, timeout graceful shutdown exceeded")
    await asyncio.wait_for(task, 1)  # ends, without CancelledError
    assert conn.ended
