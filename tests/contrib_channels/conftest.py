"""Django is configured before these modules import Channels (see tests/support/django.py).

The database is the suite's shared in-memory SQLite, migrated once per process. The helpers
are coroutines running Django's database calls in a thread: Django refuses them on the loop.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import browser as browser  # the real Chromium fixture
from tests.support.django import setup

setup()


@pytest.fixture(scope="session")
def django_db() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


@pytest.fixture
def make_user(django_db: None) -> Iterator[Callable[..., Any]]:
    """``await make_user(name)``: a user without a usable password (log in with ``session_cookie``)."""
    from django.contrib.auth import get_user_model

    model = get_user_model()
    created: list[Any] = []

    async def make(username: str, *, is_active: bool = True, is_staff: bool = False) -> Any:
        user = await model.objects.acreate_user(username, is_active=is_active, is_staff=is_staff)
        created.append(user)
        return user

    yield make
    model.objects.filter(pk__in=[user.pk for user in created]).delete()


@pytest.fixture
def session_cookie(django_db: None) -> Callable[[Any], Awaitable[str]]:
    """``await session_cookie(user)``: the cookie value of a fresh login, with the configured engine."""
    from asgiref.sync import sync_to_async
    from django.test import Client

    def login(user: Any) -> str:
        from django.conf import settings

        client = Client()
        client.force_login(user)
        return str(client.cookies[settings.SESSION_COOKIE_NAME].value)

    return sync_to_async(login)


# -- the example project in server processes -------------------------------------------------

EXAMPLE_USERS = ("alice", "bob", "carol")
PASSWORD = "test-password"


@dataclass
class Example:
    """The example project served by a child process; all its servers share one database."""

    db: Path
    port: int
    cookies: dict[str, str] = field(default_factory=dict)  # session cookies, by user name

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"


@contextlib.contextmanager
def example_server(db: Path, server: str, redis_url: str = "") -> Iterator[Example]:
    """``python -m examples.django_channels --server <server>``: the documented command."""
    from tests.support.procs import free_port, server_process

    port = free_port()
    cmd = [sys.executable, "-m", "examples.django_channels", "--server", server, "--port", str(port)]
    env = {"DEMO_DB": str(db), "DEMO_USERS": ",".join(EXAMPLE_USERS), "DEMO_PASSWORD": PASSWORD, "REDIS_URL": redis_url}
    with server_process(cmd, port, env=env):
        yield Example(db, port)


@pytest.fixture(scope="session")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Example]:
    """The example under uvicorn, once for the session (it migrates a fresh database)."""
    with example_server(tmp_path_factory.mktemp("example") / "db.sqlite3", "uvicorn") as running:
        yield running


async def log_in(example: Example, username: str) -> str:
    """Log in through the example's Django login form; return the session cookie's value
    (once per user: the example's servers share the database, so the session is valid on all)."""
    import httpx

    if username in example.cookies:
        return example.cookies[username]
    async with httpx.AsyncClient(base_url=example.origin, timeout=10) as client:
        page = await client.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token, "no CSRF token in the login form"
        form = {"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token[1], "next": "/"}
        response = await client.post("/accounts/login/", data=form)
        assert response.status_code == 302, f"{username} could not log in: {response.status_code}"
        cookie = example.cookies[username] = str(client.cookies["sessionid"])
        return cookie
