"""``ws_resume`` and ``ws_seq`` are hostile input: whatever a client puts there gets a documented
``resume_failed`` code and a fresh session, never an exception, and never disturbs the socket
holding the session the parameters point at.

One real uvicorn server and one session holder live in a background event loop for the whole
run; hypothesis drives resume attempts at them from the test's thread.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Coroutine, Iterator
from typing import Any
from urllib.parse import quote, quote_from_bytes, unquote_plus

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeTimedSerializer
from websockets.asyncio.client import connect

from tests.resume import resume_app
from tests.resume.wire import Stream, expected, opened, read_until
from tests.support.logs import no_server_errors
from tests.support.server import serve

#: Every refusal code docs/protocol.md §9 lists.
CODES = {
    "invalid_token",
    "expired",
    "unknown_session",
    "token_used",
    "seq_ahead",
    "gap_too_old",
    "identity_mismatch",
    "store_unavailable",
    "bad_request",
}
HEAD = 3  # data frames the holder received: the counts 0-3 would resume its session


class LoopThread:
    """An event loop in a thread, for a server that outlives each hypothesis example."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 15) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def background() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.close()


def encoded(text: str) -> str:
    """``text`` percent-encoded as a client may send it (lone surrogates as their UTF-8-like bytes)."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def sign(data: Any) -> str:
    """A token signed with the server's own key: payloads of the wrong shape that pass the signature."""
    return str(URLSafeTimedSerializer(resume_app.KEYS, salt="asgi_ws.resume").dumps(data))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)
counts = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.integers(HEAD + 1, 10**15 - 1).map(str),
    st.integers(min_value=10**15, max_value=10**40).map(str),
    st.just("1" + "0" * 5000),  # 10**5000
    st.sampled_from(
        ["", "+1", "-0", " 1", "1 ", "1_0", "0x1", "1e3", "1.0", "\u0661\u0662", "\uff11", "\u00b3", "NaN"]
    ),
    st.text(max_size=12),
).map(encoded) | st.binary(max_size=24).map(lambda b: quote_from_bytes(b, safe=""))


def tokens(holder: Stream) -> st.SearchStrategy[str]:
    token, session_id = holder.token, holder.session_id
    assert token is not None and session_id is not None
    payloads = st.fixed_dictionaries(
        {"s": st.just(session_id) | st.text(max_size=40) | json_values},
        optional={"u": json_values, "g": st.integers(-3, 3) | json_values},
    )
    return (
        st.one_of(
            st.just(token),  # the holder's own token, with a count that cannot resume (see legit())
            st.integers(0, len(token)).map(lambda n: token[:n]),
            st.tuples(st.integers(0, len(token) - 1), st.characters()).map(
                lambda p: token[: p[0]] + p[1] + token[p[0] + 1 :]
            ),
            st.text(max_size=3000).map(lambda garbage: token + garbage),
            (payloads | json_values).map(sign),
            st.text(max_size=60),
        ).map(encoded)
        | st.binary(max_size=80).map(lambda b: quote_from_bytes(b, safe=""))
    )


def legit(holder: Stream, token: str, count: str) -> bool:
    """Whether the server would rightly resume the holder's session with these parameters."""
    try:
        data = URLSafeTimedSerializer(resume_app.KEYS, salt="asgi_ws.resume").loads(unquote_plus(token))
    except Exception:
        return False
    seq = unquote_plus(count)
    return (
        isinstance(data, dict)
        and data.get("s") == holder.session_id
        and type(data.get("g", 0)) is int
        and data.get("g", 0) == 0
        and not isinstance(data.get("u"), str)
        and re.fullmatch("[0-9]{1,15}", seq) is not None
        and int(seq) <= HEAD
    )


async def attempt(base: str, token: str, count: str) -> dict[str, Any]:
    """One resume attempt: its first control message, once the fresh session followed it."""
    async with connect(f"{base}?ws_resume={token}&ws_seq={count}") as ws:
        stream = Stream()
        await read_until(ws, stream, lambda s: any(c["$ws"] in ("session", "resumed") for c in s.controls))
        assert stream.controls[-1]["$ws"] == "session", stream.controls
        return stream.controls[0]


def named_cases(holder: Stream) -> list[tuple[str, str, str]]:
    """The shapes the issue names, each with the refusal it must get: (ws_resume, ws_seq, code)."""
    token = holder.token
    assert token is not None
    return [
        (token, str(HEAD + 1), "seq_ahead"),
        (token, "1" + "0" * 5000, "bad_request"),  # 10**5000
        (token, "-1", "bad_request"),
        (token, "%2B1", "bad_request"),  # +1
        (token, "%201", "bad_request"),  # whitespace
        (token, encoded("\u0661\u0662"), "bad_request"),  # Arabic-Indic 12
        (token, "%ED%A0%80", "bad_request"),  # a lone surrogate, percent-encoded
        (token, "", "bad_request"),
        (encoded("\ud800"), "0", "invalid_token"),
        (token[:-3], "0", "invalid_token"),
        (token + "." + token, "0", "invalid_token"),
        (sign({"s": holder.session_id, "u": None, "g": 1}), "0", "unknown_session"),  # a generation to come
        (sign({"s": holder.session_id, "u": None, "g": True}), "0", "invalid_token"),
        (sign({"s": holder.session_id, "u": "mallory"}), "0", "identity_mismatch"),
        (sign([holder.session_id]), "0", "invalid_token"),
    ]


def test_hostile_resume_parameters_get_a_refusal_and_leave_the_holder_alone(
    store_url: str, background: LoopThread
) -> None:
    app = resume_app.make_app(store_url)
    server_cm = serve(app, log_config=None)
    with no_server_errors():
        server = background.run(server_cm.__aenter__())
        base, holder = server.ws_url("/"), Stream()
        ws = background.run(opened(base, holder))
        try:
            background.run(ws.send(f"emit 1 {HEAD + 1}"))
            background.run(read_until(ws, holder, lambda s: len(s.data) >= HEAD))
            for token, count, code in named_cases(holder):
                answer = background.run(attempt(base, token, count))
                assert (answer["$ws"], answer.get("code")) == ("resume_failed", code), (token, count, answer)
                assert ws.close_code is None, "the holder was disturbed"
            tried: list[tuple[str, str]] = []

            @settings(
                max_examples=100 if store_url == "memory://" else 50,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            )
            @given(st.data())
            def resume_with(data: st.DataObject) -> None:  # ws_resume and ws_seq of any shape
                token = data.draw(tokens(holder), "ws_resume")
                count = data.draw(counts, "ws_seq")
                assume(unquote_plus(token) != "new" and not legit(holder, token, count))
                first = background.run(attempt(base, token, count))
                tried.append((token, count))
                assert first["$ws"] == "resume_failed" and first["code"] in CODES, first
                assert ws.close_code is None, "the holder was disturbed"

            resume_with()
            assert len(tried) >= 20, "hypothesis tried enough shapes"
            background.run(ws.send(f"emit {HEAD + 1} {HEAD + 3}"))  # the holder still holds the session
            background.run(read_until(ws, holder, lambda s: len(s.data) >= HEAD + 2))
            assert holder.data == expected(1, HEAD + 3) and ws.close_code is None
        finally:
            background.run(ws.close())
            background.run(server_cm.__aexit__(None, None, None))
            background.run(app.close())
