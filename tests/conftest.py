from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from asgi_ws._repeated import reset_all
from tests.support import bounded
from tests.support.server import WS_IMPLS

bounded.install()  # every bare `await ws.recv()` in a test fails after a bound instead of hanging


@pytest.fixture(autouse=True)
def _fresh_repeated_logs() -> Iterator[None]:
    """Each test sees the first occurrence of a repeated line logged (asgi_ws._repeated), and
    leaves no summary pending for the end of the run."""
    reset_all()
    yield
    reset_all()


_LOGGER_STATE = ("level", "propagate", "disabled")


@pytest.fixture(autouse=True)
def _logging_left_as_found() -> Iterator[None]:
    """Undo what a test's server did to logging: uvicorn's dictConfig (``log_config=...``)
    replaces handlers and sets ``propagate=False`` on ``asgi_ws`` and ``uvicorn.*`` for the
    rest of the process, and a handler bound to a closed capture stream breaks later tests.

    Filters stay: the library adds its own once per process (redaction, uvicorn's spurious
    handshake ERROR), as they stay in production through any logging reconfiguration. The
    handler asgi_ws.log.settle() may add is kept too, for the same reason.
    """
    from asgi_ws.log import ServerLogBridge

    root = logging.getLogger()
    names = [n for n in logging.Logger.manager.loggerDict if n.split(".")[0] in ("asgi_ws", "uvicorn")]
    loggers = [root, *(logging.getLogger(n) for n in names)]
    saved = [(lg, [getattr(lg, a) for a in _LOGGER_STATE], list(lg.handlers)) for lg in loggers]
    yield
    for lg, values, handlers in saved:
        for attribute, value in zip(_LOGGER_STATE, values, strict=True):
            setattr(lg, attribute, value)
        bridges = [h for h in lg.handlers if isinstance(h, ServerLogBridge) and h not in handlers]
        lg.handlers[:] = [*handlers, *bridges]
    for name in list(logging.Logger.manager.loggerDict):  # loggers the test created: back to defaults
        if name.split(".")[0] in ("asgi_ws", "uvicorn") and name not in names:
            lg = logging.getLogger(name)
            lg.handlers.clear()
            lg.propagate, lg.disabled = True, False
            lg.setLevel(logging.NOTSET)


@pytest.fixture(params=WS_IMPLS)
def ws_impl(request: pytest.FixtureRequest) -> str:
    """Each uvicorn WebSocket implementation in turn."""
    return str(request.param)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The machine's Redis (started if down; skip, or fail under CI=true, if impossible)."""
    from tests.support.services import require

    return require("redis")


@pytest.fixture(scope="session")
def postgres_url() -> str:
    from tests.support.services import require

    return require("postgres")


@pytest.fixture(scope="session")
def nats_url() -> str:
    from tests.support.services import require

    return require("nats")


@pytest.fixture(scope="session")
def amqp_url() -> str:
    """The machine's RabbitMQ (guest/guest on 127.0.0.1:5672)."""
    from tests.support.services import require

    return require("rabbitmq")
