"""Hostile handshakes: arbitrary bytes in Origin, Authorization, Cookie, Sec-WebSocket-Protocol
and the query, huge values, repeated headers, against a real uvicorn running the handshake stack.

Every handshake must get a documented status (101/400/401/403/429/503), a 101 only with an
allowed origin, a valid ticket and a supported subprotocol, the server must log no ERROR and
no traceback, and a bystander connection must stay up. Requests are written on raw sockets
(the ``websockets`` client refuses most of these bytes).

A few inputs break the *server* before asgi_ws runs; the strategies leave them out per
implementation (``_defect_free``), and the in-memory test drives the same stack with every
byte instead. Observed with uvicorn 0.54 (h11 parser), websockets 17.4, wsproto 1.3.2:

- ``websockets`` (legacy): a header byte >= 0x80 answers 500 and logs "opening handshake
  failed" with a traceback (uvicorn re-encodes websockets' surrogate-escaped header as latin-1).
- ``websockets-sansio``: a control character in a header value, or a request or header line of
  8,192 bytes or more, gets no response at all (websockets refuses the request; uvicorn never
  writes the rejection) and the connection stays open. (It also logs "ASGI callable returned
  without completing handshake." at ERROR after every denial response: asgi_ws drops that
  line, so it is not exempted here; docs/logging.md.)
- ``wsproto``: a ``Sec-WebSocket-Protocol`` byte >= 0x80 raises inside wsproto's handshake:
  asyncio logs "Fatal error: protocol.data_received() call failed" and drops the connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from asgi_ws import AuthMiddleware, ConnectionLimitMiddleware, OriginMiddleware, SubprotocolMiddleware
from asgi_ws._scope import query_param
from asgi_ws.auth import SignedTicket
from asgi_ws.middleware.origin import parse_origin
from tests.client.conftest import until
from tests.support.apps import Probe, echo_app
from tests.support.asgi import handshake, ws_scope
from tests.support.clients import opened
from tests.support.logs import captured_logs, describe, is_error
from tests.support.server import serve

ALLOWED = "https://app.example.com"
SUPPORTED = "chat.v1"
DOCUMENTED = {101, 400, 401, 403, 429, 503}
TICKETS = SignedTicket(["hardening-key-0123456789abcdef"], max_age=600)
ALICE, HELD, BYSTANDER = (TICKETS.issue(user) for user in ("alice", "held", "bystander"))
VALID = {ALICE: "alice", HELD: "held", BYSTANDER: "bystander"}
NAMES = (b"Origin", b"Authorization", b"Cookie", b"Sec-WebSocket-Protocol")
OFFER = [(b"Sec-WebSocket-Protocol", SUPPORTED.encode())]
CTL = bytes(b for b in range(0x20) if b not in b"\t") + b"\x7f"
HIGH = bytes(range(0x80, 0x100))


def make_stack(probe: Probe) -> tuple[Any, ConnectionLimitMiddleware, ConnectionLimitMiddleware]:
    """Caps outermost, then Origin, Auth (tickets), the per-user cap inside Auth, Subprotocol."""
    per_user = ConnectionLimitMiddleware(SubprotocolMiddleware(echo_app(probe), supported=[SUPPORTED]), max_per_user=1)
    outer = ConnectionLimitMiddleware(
        OriginMiddleware(AuthMiddleware(per_user, backend=TICKETS), allow_origins=[ALLOWED]),
        max_connections=8,
        max_per_ip=8,
    )
    return outer, outer, per_user


# -- what to send -----------------------------------------------------------------------------


def _defect_free(impl: str | None, name: bytes, value: bytes) -> bytes:
    """``value`` with the bytes that break this server itself (module docstring) replaced."""
    value = value.replace(b"\r", b"?").replace(b"\n", b"?")  # they would end the header, not be in it
    if impl == "websockets":
        value = value.translate(None, HIGH)
    elif impl == "websockets-sansio":
        value = value.translate(bytes.maketrans(CTL, b"?" * len(CTL)))[: 8000 - len(name)]
    elif impl == "wsproto" and name == b"Sec-WebSocket-Protocol":
        value = value.translate(None, HIGH)
    return value


#: Bytes a request target may carry (visible ASCII); the other bytes get a 400 from the server's parser.
_TARGET = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80).map(str.encode)
_RAW = st.one_of(
    st.binary(max_size=60),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60).map(lambda t: t.encode("latin-1")),
    st.sampled_from(
        [ALLOWED.encode(), b"null", b"https://evil.example", ALLOWED.encode() + b"/", SUPPORTED.encode(), b"chat.v1, x"]
    ),
    st.builds(
        lambda unit, size: (unit * (size // len(unit) + 1))[:size],
        st.binary(min_size=1, max_size=3),
        st.sampled_from([1_000, 7_900, 9_000, 20_000]),
    ),
)
_QUERIES = st.one_of(
    st.sampled_from([ALICE, HELD, "", "garbage"]).map(lambda t: f"ticket={t}".encode()),
    st.just(f"ticket={ALICE}".encode()),
    st.tuples(st.sampled_from([ALICE, HELD]), st.one_of(_TARGET, st.binary(max_size=40))).map(
        lambda t: f"ticket={t[0]}&".encode() + t[1]
    ),
    _TARGET,
    st.binary(max_size=80),
    st.builds(lambda n: b"ticket=" + b"A" * n, st.sampled_from([5_000, 9_000])),
)


def _for_server(impl: str, target: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[bytes, Any]:
    if impl == "websockets-sansio":
        target = target.translate(bytes.maketrans(CTL, b"?" * len(CTL)))[:8000]
    return target, [(name, _defect_free(impl, name, value)) for name, value in headers]


def requests() -> st.SearchStrategy[tuple[bytes, list[tuple[bytes, bytes]]]]:
    """A request target and headers of any bytes but CR and LF: each part (Origin, ticket,
    subprotocol offer, other credentials) either right or hostile, so every check gets reached."""

    def fuzzed(names: tuple[bytes, ...]) -> st.SearchStrategy[list[tuple[bytes, bytes]]]:
        header = st.sampled_from(names).flatmap(
            lambda name: st.tuples(st.just(name), _RAW.map(lambda value: _defect_free(None, name, value)))
        )
        repeated = st.tuples(header, st.integers(min_value=2, max_value=40)).map(lambda t: [t[0]] * t[1])
        return st.lists(st.one_of(header.map(lambda h: [h]), repeated), max_size=3).map(
            lambda groups: [h for group in groups for h in group]
        )

    origin = st.one_of(st.just([(b"Origin", ALLOWED.encode())]), fuzzed((b"Origin",)))
    offer = st.one_of(st.just([(b"Sec-WebSocket-Protocol", SUPPORTED.encode())]), fuzzed((b"Sec-WebSocket-Protocol",)))
    query = _QUERIES.map(lambda q: q.replace(b"\r", b"").replace(b"\n", b""))
    return st.tuples(
        query.map(lambda q: b"/ws?" + q),
        st.tuples(origin, offer, fuzzed(NAMES)).map(lambda parts: [h for part in parts for h in part][:100]),
    )  # websockets allows 128 headers in all


def may_be_accepted(target: bytes, headers: list[tuple[bytes, bytes]]) -> bool:
    """What a 101 requires: one allowed Origin, a valid ticket, the supported subprotocol offered."""
    origins = [v for k, v in headers if k == b"Origin"]
    offered = b",".join(v for k, v in headers if k == b"Sec-WebSocket-Protocol").split(b",")
    ticket = query_param({"query_string": target.partition(b"?")[2]}, "ticket")
    return (
        len(origins) == 1
        and parse_origin(origins[0].decode("latin-1")) == parse_origin(ALLOWED)
        and ticket in VALID
        and SUPPORTED.encode() in [p.strip() for p in offered]
    )


# -- a real uvicorn --------------------------------------------------------------------------


def handshake_status(port: int, target: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """Write the upgrade request on a raw socket and return the response's status code."""
    lines = [
        b"GET " + target + b" HTTP/1.1",
        b"Host: 127.0.0.1:%d" % port,
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        b"Sec-WebSocket-Version: 13",
        *(name + b": " + value for name, value in headers),
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
        response = b""
        try:
            while b"\r\n" not in response:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                response += chunk
        except TimeoutError:
            raise AssertionError(f"no response within 10 s to {target[:60]!r} {headers!r:.300}") from None
    if not response.startswith(b"HTTP/1.1 "):
        raise AssertionError(f"closed without a response: {target[:60]!r} {headers!r:.300}")
    return int(response.split(b" ", 2)[1])


async def test_hostile_handshakes_get_documented_statuses_against_uvicorn(ws_impl: str) -> None:
    probe = Probe()
    app, outer, per_user = make_stack(probe)
    seen: list[int] = []

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(requests())
    @example(request=(f"/ws?ticket={ALICE}".encode(), [(b"Origin", ALLOWED.encode()), *OFFER]))  # 101
    @example(request=(f"/ws?ticket={HELD}".encode(), [(b"Origin", ALLOWED.encode()), *OFFER]))  # 429
    @example(request=(f"/ws?ticket={ALICE}".encode(), [(b"Origin", ALLOWED.encode())]))  # 400
    @example(request=(b"/ws?ticket=garbage", [(b"Origin", ALLOWED.encode()), *OFFER]))  # 401
    @example(request=(f"/ws?ticket={ALICE}".encode(), OFFER))  # 403
    @example(request=(b"/ws?ticket=" + b"A" * 9_000, [(b"Cookie", b"\xff" * 7_000)] * 3))
    def fuzz(port: int, request: tuple[bytes, list[tuple[bytes, bytes]]]) -> None:
        target, headers = _for_server(ws_impl, *request)  # the explicit examples are for every server
        status = handshake_status(port, target, headers)
        assert status in DOCUMENTED, (status, target[:60], headers[:4])
        assert status != 101 or may_be_accepted(target, headers), ("accepted", target[:60], headers[:4])
        seen.append(status)

    with captured_logs(logging.INFO) as records:
        async with serve(app, ws=ws_impl, http="h11", log_config=None) as server:
            url = server.ws_url("/ws")
            async with (
                opened(f"{url}?ticket={BYSTANDER}", origin=ALLOWED, subprotocols=[SUPPORTED]) as bystander,
                opened(f"{url}?ticket={HELD}", origin=ALLOWED, subprotocols=[SUPPORTED]) as held,
            ):
                assert json.loads(await bystander.recv())["user"] == "bystander"
                await held.recv()
                port = server.port
                await asyncio.wait_for(asyncio.to_thread(fuzz, port), 120)
                await bystander.send("still here")
                assert await asyncio.wait_for(bystander.recv(), 10) == "still here", "the bystander lost its echo"
                # Every fuzzed connection released: only the bystander and the held one count.
                await until(lambda: outer.open == per_user.open == 2 and outer.counter.per_ip == {"127.0.0.1": 2})
    errors = [r for r in records if is_error(r)]
    assert not errors, f"the server logged errors:\n{describe(errors)}"
    assert len(seen) >= 150 and {101, 400, 401, 403, 429} <= set(seen), sorted(set(seen))


# -- every byte, in memory --------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(requests(), st.lists(st.binary(max_size=30), max_size=3))
def test_any_bytes_get_a_documented_refusal_in_memory(
    request: tuple[bytes, list[tuple[bytes, bytes]]], subprotocols: list[bytes]
) -> None:
    """What a server would pass in the scope: header values latin-1, subprotocols as any text."""
    target, headers = request

    async def run() -> None:
        probe = Probe()
        app = make_stack(probe)[0]
        scope = ws_scope("/ws", headers=[(k.decode(), v.decode("latin-1")) for k, v in headers])
        scope["query_string"] = target.partition(b"?")[2]
        scope["subprotocols"] = [v.decode("latin-1") for k, v in headers if k == b"Sec-WebSocket-Protocol"] + [
            s.decode("latin-1") for s in subprotocols
        ]
        outcome, comm = await handshake(app, scope)
        if outcome.kind == "accepted":
            assert may_be_accepted(target, headers) or SUPPORTED in scope["subprotocols"]
            await comm.send_input({"type": "websocket.disconnect", "code": 1000})
        else:
            assert outcome.status in DOCUMENTED, outcome
        await comm.wait(2)

    with captured_logs(logging.INFO) as records:
        asyncio.run(run())
    errors = [r for r in records if is_error(r)]
    assert not errors, describe(errors)
