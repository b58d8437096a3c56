from __future__ import annotations

from collections.abc import Callable

import pytest

from asgi_ws.brokers import MemoryBroker, broker_from_url
from asgi_ws.exceptions import ConfigurationError, MissingDependencyError
from tests.brokers.conformance import BrokerConformance, HistoryConformance


class TestMemoryBroker(BrokerConformance):
    shared_between_instances = False

    @pytest.fixture
    def broker_url(self) -> str:
        return "memory://"


class TestMemoryBrokerHistory(HistoryConformance):
    has_age_limit = False
    shared_between_instances = False

    @pytest.fixture
    def history_url(self) -> Callable[..., str]:
        return lambda size, ttl=None: f"memory://?history={size}"


def test_history_options_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="history is a number"):
        broker_from_url("memory://?history=-1")
    with pytest.raises(ConfigurationError, match="invalid Redis broker URL"):
        broker_from_url("redis://localhost?history=lots")


def test_broker_from_url_knows_the_schemes() -> None:
    assert isinstance(broker_from_url("memory://"), MemoryBroker)
    with pytest.raises(ConfigurationError, match="unknown broker URL scheme 'kafka'"):
        broker_from_url("kafka://localhost")


@pytest.mark.parametrize(
    ("library", "module", "url", "extra"),
    [
        ("redis", "asgi_ws.brokers.redis", "redis://localhost", "redis"),
        ("aio_pika", "asgi_ws.brokers.amqp", "amqp://localhost", "amqp"),
        ("aio_pika", "asgi_ws.brokers.amqp", "amqps://localhost", "amqp"),
    ],
)
def test_a_missing_client_library_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, library: str, module: str, url: str, extra: str
) -> None:
    import builtins

    real_import = builtins.__import__

    def without(name: str, *args: object, **kwargs: object) -> object:
        if name == library or name.startswith(f"{library}."):
            raise ModuleNotFoundError(f"No module named {library!r}", name=library)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", without)
    monkeypatch.delitem(__import__("sys").modules, module, raising=False)
    with pytest.raises(MissingDependencyError, match=rf"pip install 'asgi-ws\[{extra}\]'"):
        broker_from_url(url)


def test_redacted_urls() -> None:
    from asgi_ws.brokers.base import redact_url

    assert redact_url("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert redact_url("postgres://user:pw@host/db") == "postgres://user:***@host/db"
    assert redact_url("nats://host:4222") == "nats://host:4222"
