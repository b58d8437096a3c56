from __future__ import annotations

from urllib.parse import parse_qsl, quote

from hypothesis import given
from hypothesis import strategies as st

from asgi_ws._scope import (
    child_scope,
    client_address,
    cookie,
    header,
    header_values,
    log_path,
    log_safe,
    query_param,
)
from tests.support.asgi import ws_scope

names = st.sampled_from(["ticket", "token", "t", "a b", "é"])
values = st.text(max_size=20)


@given(st.lists(st.tuples(names, values), max_size=5), names)
def test_query_param_agrees_with_parse_qsl(pairs: list[tuple[str, str]], name: str) -> None:
    raw = "&".join(f"{quote(k)}={quote(v)}" for k, v in pairs)
    expected = next((v for k, v in parse_qsl(raw, keep_blank_values=True) if k == name), None)
    scope = {"query_string": raw.encode("latin-1")}
    assert query_param(scope, name) == expected


@given(st.binary(max_size=60))
def test_query_param_never_raises(raw: bytes) -> None:
    query_param({"query_string": raw}, "ticket")


def test_headers_cookies_and_log_helpers() -> None:
    scope = ws_scope(
        "/ws",
        query="ticket=SECRET",
        headers=[("Origin", "https://a"), ("Cookie", 'a=1; session="abc"'), ("X-Dup", "1"), ("X-Dup", "2")],
    )
    assert header(scope, b"origin") == "https://a"
    assert header(scope, b"x-dup") is None and header_values(scope, b"x-dup") == ["1", "2"]
    assert cookie(scope, "session") == "abc" and cookie(scope, "missing") is None
    assert client_address(scope) == "127.0.0.1:50000" and client_address({}) == "-"
    assert log_path(scope) == "/ws" and "SECRET" not in log_path(scope)
    assert log_path({"root_path": "/api", "path": "/ws"}) == "/api/ws"


def test_child_scope_copies_and_shares_the_namespace() -> None:
    parent = ws_scope()
    child = child_scope(parent)
    child["user"] = "someone"
    assert child is not parent and "user" not in parent  # changes go to the copy...
    assert child["asgi_ws"] is parent["asgi_ws"]  # ...the namespace is shared (added in place)
    grandchild = child_scope(child)
    assert grandchild["asgi_ws"] is child["asgi_ws"]


def test_log_safe_escapes_what_could_forge_a_line_and_cuts_long_values() -> None:
    assert log_safe("https://a.example") == "'https://a.example'"
    forged = 'https://a\r\n127.0.0.1:1 - "WebSocket /ws" [accepted]\x1b[2K\u2028'
    assert not any(c in log_safe(forged) for c in "\r\n\x1b\u2028")
    long = log_safe("x" * 10_000, limit=50)
    assert long == repr("x" * 50) + "... (10000 characters)"
    # A client address rewritten from X-Forwarded-For is escaped the same way.
    assert client_address({"client": ("1.2.3.4\nforged", 5)}) == "'1.2.3.4\\nforged':5"
