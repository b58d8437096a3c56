"""The control router's handler tables: shared by the connections that register the same
handlers, and bounded however many distinct handlers are registered."""

from __future__ import annotations

from typing import Any

from asgi_ws import control
from asgi_ws.control import _MAX_CACHED, _Table


def handler(conn: Any, message: dict[str, Any]) -> None:
    """A module-level handler, as the docs ask."""


def test_the_same_extension_is_the_same_table() -> None:
    root = _Table({}, {})
    assert root.extended("op", "x", handler) is root.extended("op", "x", handler)
    assert root.extended("op", "x", handler).handlers == {"x": handler}


def test_the_cache_is_bounded_and_forgets_the_least_recently_used() -> None:
    root = _Table({}, {})
    kept = root.extended("op", "kept", handler)
    closures = []
    for i in range(_MAX_CACHED * 2):  # the misuse: a new closure each time
        closures.append(lambda conn, message: None)
        root.extended("op", f"c{i % 3}", closures[-1])
        if i % 10 == 0:
            assert root.extended("op", "kept", handler) is kept  # used recently: stays
    assert len(root._next) <= _MAX_CACHED
    assert root.extended("op", "kept", handler) is kept
    newest = root.extended("op", "c0", closures[-1])  # still cached: the most recent ones are
    assert root.extended("op", "c0", closures[-1]) is newest


def test_a_root_crowded_by_other_apps_still_shares_the_newest_tables() -> None:
    """Many apps (as in a test suite) registered before: the latest app's connections share."""
    root = control._ROOT
    for _ in range(_MAX_CACHED + 5):
        root.extended("op", "crowd", lambda conn, message: None)
    mine = lambda conn, message: None  # noqa: E731
    assert root.extended("op", "mine", mine) is root.extended("op", "mine", mine)
