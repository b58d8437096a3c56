from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgi_ws import ConfigurationError, OriginMiddleware
from asgi_ws.middleware.origin import Origin, OriginPolicy, parse_origin
from tests.support.apps import Probe, echo_app
from tests.support.asgi import handshake, ws_scope
from tests.support.clients import opened, refusal
from tests.support.server import serve

# -- parsing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://example.com", Origin("https", "example.com", 443)),
        ("https://EXAMPLE.com", Origin("https", "example.com", 443)),
        ("https://example.com:443", Origin("https", "example.com", 443)),
        ("HTTP://example.com:80", Origin("http", "example.com", 80)),
        ("http://example.com:8080", Origin("http", "example.com", 8080)),
        ("https://[::1]:8443", Origin("https", "[::1]", 8443)),
        ("http://127.0.0.1:8000", Origin("http", "127.0.0.1", 8000)),
        ("https://xn--bcher-kva.example", Origin("https", "xn--bcher-kva.example", 443)),
    ],
)
def test_parse_origin_normalises(value: str, expected: Origin) -> None:
    assert parse_origin(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "null",
        "example.com",
        "https://",
        "https://example.com/",
        "https://example.com/path",
        "https://example.com?q=1",
        "https://example.com#frag",
        "https://user@example.com",
        "https://example.com:",
        "https://example.com:99999",
        "https://example.com:abc",
        "ftp://example.com",
        "javascript://example.com",
        "https://exa mple.com",
        "https://exa_mple.com",
        "https://-example.com",
        "https://example.com.",
    ],
)
def test_parse_origin_refuses_what_browsers_never_send(value: str) -> None:
    assert parse_origin(value) is None


def test_origin_str_omits_default_port_only() -> None:
    assert str(Origin("https", "x.com", 443)) == "https://x.com"
    assert str(Origin("https", "x.com", 8443)) == "https://x.com:8443"
    assert str(Origin("http", "x.com", 443)) == "http://x.com:443"


# -- the policy --------------------------------------------------------------------


def test_exact_origins_compare_scheme_host_and_port() -> None:
    policy = OriginPolicy(["https://app.example.com", "http://localhost:8000"])
    assert policy.check(["https://app.example.com"]) is None
    assert policy.check(["https://APP.Example.COM:443"]) is None
    assert policy.check(["http://localhost:8000"]) is None
    assert policy.check(["http://app.example.com"]) == "origin not allowed"  # scheme matters
    assert policy.check(["https://app.example.com:8443"]) == "origin not allowed"  # port matters
    assert policy.check(["http://localhost"]) == "origin not allowed"
    assert policy.check(["https://other.example.com"]) == "origin not allowed"


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://a.example.com", True),
        ("https://a.b.example.com", True),
        ("https://A.EXAMPLE.com:443", True),
        ("https://example.com", False),  # the bare domain is not a subdomain
        ("https://example.com.evil.net", False),
        ("https://evilexample.com", False),
        ("https://a.evilexample.com", False),
        ("https://aexample.com", False),
        ("http://a.example.com", False),  # scheme
        ("https://a.example.com:8443", False),  # port
        ("https://a.example.co", False),
    ],
)
def test_wildcard_subdomain_pitfalls(origin: str, allowed: bool) -> None:
    policy = OriginPolicy(["https://*.example.com"])
    assert (policy.check([origin]) is None) is allowed


def test_wildcard_with_port() -> None:
    policy = OriginPolicy(["https://*.example.com:8443"])
    assert policy.check(["https://a.example.com:8443"]) is None
    assert policy.check(["https://a.example.com"]) == "origin not allowed"


def test_regex_matches_the_whole_normalised_origin() -> None:
    policy = OriginPolicy(allow_origin_regex=r"https://(staging|preview-\d+)\.example\.com")
    assert policy.check(["https://staging.example.com"]) is None
    assert policy.check(["https://PREVIEW-42.example.com:443"]) is None
    assert policy.check(["https://staging.example.com.evil.net"]) == "origin not allowed"
    assert policy.check(["https://staging.example.com:8443"]) == "origin not allowed"
    compiled = OriginPolicy(allow_origin_regex=re.compile(r"http://localhost:\d+"))
    assert compiled.check(["http://localhost:5173"]) is None


def test_missing_origin_is_refused_unless_allowed() -> None:
    assert OriginPolicy(["https://x.com"]).check([]) == "missing Origin header"
    assert OriginPolicy(["https://x.com"], allow_missing=True).check([]) is None


def test_null_origin_is_refused_unless_allowed_even_with_star() -> None:
    assert OriginPolicy(["https://x.com"]).check(["null"]) == "origin 'null' not allowed"
    assert OriginPolicy(["*"]).check(["null"]) == "origin 'null' not allowed"
    assert OriginPolicy(["https://x.com"], allow_null=True).check(["null"]) is None


def test_star_allows_any_well_formed_or_not_origin_but_not_missing() -> None:
    policy = OriginPolicy(["*"])
    assert policy.check(["https://anything.net"]) is None
    assert policy.check([]) == "missing Origin header"


def test_two_origin_headers_are_refused() -> None:
    policy = OriginPolicy(["https://x.com"])
    assert policy.check(["https://x.com", "https://x.com"]) == "more than one Origin header"


def test_malformed_origin_is_refused() -> None:
    assert OriginPolicy(["https://x.com"]).check(["https://x.com/path"]) == "malformed Origin header"


def test_same_origin_compares_with_the_host_header() -> None:
    policy = OriginPolicy(allow_same_origin=True)
    assert policy.check(["http://localhost:8000"], "localhost:8000") is None
    assert policy.check(["https://shop.example.com"], "shop.example.com") is None
    assert policy.check(["https://shop.example.com"], "shop.example.com:443") is None
    assert policy.check(["https://evil.net"], "shop.example.com") == "origin not allowed"
    assert policy.check(["http://localhost:8000"], None) == "origin not allowed"
    assert policy.check(["http://localhost:8000"], "localhost:9000") == "origin not allowed"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"allow_origins": "https://x.com"}, "not a single string"),
        ({"allow_origins": ["https://x.com/app"]}, "is not an origin"),
        ({"allow_origins": ["x.com"]}, "is not an origin"),
        ({"allow_origins": ["null"]}, "allow_null"),
        ({"allow_origins": ["https://a.*.com"]}, "wildcard"),
        ({"allow_origins": ["*.example.com"]}, "wildcard"),
        ({"allow_origins": ["https://*"]}, "wildcard"),
        ({"allow_origin_regex": "("}, "not a valid regular expression"),
        ({}, "allows no origin"),
    ],
)
def test_bad_configuration_is_refused_at_construction(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        OriginMiddleware(echo_app(), **kwargs)  # type: ignore[arg-type]


@given(st.text(max_size=80))
def test_any_header_value_gets_a_decision_never_an_exception(value: str) -> None:
    policy = OriginPolicy(["https://*.example.com", "http://localhost:8000"], allow_origin_regex=r"https://x\.io")
    assert policy.check([value]) in (
        None,
        "origin not allowed",
        "malformed Origin header",
        "origin 'null' not allowed",
    )


labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)


@given(st.lists(labels, min_size=1, max_size=4), st.lists(labels, min_size=1, max_size=3))
def test_wildcard_matches_exactly_the_subdomains(prefix: list[str], domain: list[str]) -> None:
    suffix = ".".join(domain)
    host = ".".join(prefix)
    policy = OriginPolicy([f"https://*.{suffix}"])
    allowed = policy.check([f"https://{host}"]) is None
    assert allowed == host.endswith("." + suffix)
    assert policy.check([f"https://{host}.{suffix}"]) is None


# -- the middleware, in memory -------------------------------------------------------


async def test_refusal_is_an_http_403_with_a_reason_when_the_server_allows_it() -> None:
    app = OriginMiddleware(echo_app(), allow_origins=["https://good.com"])
    outcome, _ = await handshake(app, ws_scope(headers=[("origin", "https://evil.com")]))
    assert (outcome.kind, outcome.status, outcome.body) == ("denied", 403, b"origin not allowed")
    assert outcome.headers["content-type"].startswith("text/plain")


async def test_refusal_is_a_close_before_accept_without_the_denial_extension() -> None:
    probe = Probe()
    app = OriginMiddleware(echo_app(probe), allow_origins=["https://good.com"])
    outcome, _ = await handshake(app, ws_scope(headers=[("origin", "https://evil.com")], extensions=False))
    assert outcome.kind == "closed"
    assert outcome.reason == "origin not allowed"
    assert probe.calls == 0


async def test_allowed_origin_reaches_the_app_with_the_normalised_origin() -> None:
    probe = Probe()
    app = OriginMiddleware(echo_app(probe), allow_origins=["https://good.com"])
    scope = ws_scope(headers=[("origin", "https://GOOD.com:443")])
    before = dict(scope)
    outcome, comm = await handshake(app, scope)
    assert outcome.kind == "accepted"
    hello = json.loads((await comm.receive_output(1))["text"])
    assert hello["origin"] == "https://good.com"
    # The library's namespace is the one key added to the caller's scope; nothing else changes.
    assert {k: v for k, v in scope.items() if k != "asgi_ws"} == before
    await comm.send_input({"type": "websocket.disconnect", "code": 1000})
    await comm.wait(2)


async def test_refusal_is_logged_without_the_query_string(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="asgi_ws")
    app = OriginMiddleware(echo_app(), allow_origins=["https://good.com"])
    await handshake(app, ws_scope("/ws", query="ticket=SECRET", headers=[("origin", "https://evil.com")]))
    (record,) = [r for r in caplog.records if r.name == "asgi_ws.handshake"]
    line = record.getMessage()
    assert "OriginMiddleware" in line and "403 origin not allowed" in line and '"WebSocket /ws"' in line
    assert "SECRET" not in line


# -- end to end through uvicorn ----------------------------------------------------------


async def test_origin_end_to_end(ws_impl: str) -> None:
    probe = Probe()
    app = OriginMiddleware(echo_app(probe), allow_origins=["https://app.example.com", "https://*.example.net"])
    async with serve(app, ws=ws_impl) as server:
        url = server.ws_url("/ws")
        for origin in ("https://app.example.com", "https://a.b.example.net"):
            async with opened(url, origin=origin) as conn:
                assert json.loads(await conn.recv())["origin"] == origin

        for origin, reason in [
            ("https://evil.com", "origin not allowed"),
            ("https://example.net", "origin not allowed"),
            ("https://app.example.com.evil.net", "origin not allowed"),
            ("null", "origin 'null' not allowed"),
        ]:
            refused = await refusal(url, origin=origin)
            assert (refused.status, refused.body) == (403, reason)
        refused = await refusal(url)  # the websockets client sends no Origin unless told to
        assert (refused.status, refused.body) == (403, "missing Origin header")
    assert probe.calls == 2


async def test_non_browser_clients_pass_with_allow_missing(ws_impl: str) -> None:
    app = OriginMiddleware(echo_app(), allow_origins=["https://app.example.com"], allow_missing=True)
    async with serve(app, ws=ws_impl) as server, opened(server.ws_url("/ws")) as conn:
        assert json.loads(await conn.recv())["origin"] is None


# -- the refusal's log line names the refused origin, escaped --------------------------------


async def test_refusal_line_names_the_origin_escaped_and_cut(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="asgi_ws")
    app = OriginMiddleware(echo_app(), allow_origins=["https://good.com"])
    forged = 'https://evil.com\r\n127.0.0.1:1 - "WebSocket /ws" [accepted]\x1b[2K'
    cases = [
        ([("origin", "https://evil.com")], "403 origin not allowed (Origin 'https://evil.com')"),
        ([("origin", forged)], f"403 malformed Origin header (Origin {forged!r})"),
        ([("origin", "https://a.io"), ("origin", "https://b.io")], "(Origin 'https://a.io', 'https://b.io')"),
        ([("origin", "https://" + "a" * 5000 + ".com")], "... (5012 characters))"),
        ([], "403 missing Origin header"),
    ]
    for headers, expected in cases:
        caplog.clear()
        await handshake(app, ws_scope(headers=headers))
        (record,) = [r for r in caplog.records if r.name == "asgi_ws.handshake"]
        line = record.getMessage()
        assert line.endswith(expected), line
        assert "\r" not in line and "\n" not in line and "\x1b" not in line and len(line) < 300


def test_long_origins_are_decided_without_filling_the_cache() -> None:
    policy = OriginPolicy(["https://good.com"], allow_same_origin=True)
    for i in range(50):
        assert policy.check([f"https://{'a' * 400}{i}.com"]) == "malformed Origin header"
        assert policy.check(["https://good.com"], host="h" * 400 + str(i)) is None
    assert policy.check(["https://good.com"], host="good.com") is None
    assert policy._decide_one.cache_info().currsize == 1  # only the short origin and host
