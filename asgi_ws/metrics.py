"""Prometheus metrics for asgi_ws, read when scraped: nothing is counted twice on the hot path.

The library keeps plain counters (per connection, per middleware, per Rooms); this module
turns them into Prometheus metric families on each scrape through a custom collector.

    from prometheus_client import REGISTRY, make_asgi_app
    from asgi_ws.metrics import AsgiWsCollector

    REGISTRY.register(AsgiWsCollector(rooms=[rooms], backpressure=[bp], ratelimit=[rl], connlimit=[cl]))
    app.mount("/metrics", make_asgi_app())

Needs ``prometheus_client`` (``pip install 'asgi-ws[metrics]'``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .connection import COUNTS
from .deny import REFUSED
from .exceptions import MissingDependencyError


def _families() -> Any:
    try:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    except ModuleNotFoundError as exc:
        raise MissingDependencyError("asgi_ws.metrics needs prometheus_client: pip install 'asgi-ws[metrics]'") from exc
    return CounterMetricFamily, GaugeMetricFamily


class AsgiWsCollector:
    """A prometheus_client collector of asgi_ws's counters.

    Args:
        rooms: Rooms instances (labelled by namespace).
        backpressure: BackpressureMiddleware instances (labelled ``0``, ``1``... or by ``names``).
        ratelimit: RateLimitMiddleware instances (same labels).
        resume: ResumeMiddleware instances (same labels).
        connlimit: ConnectionLimitMiddleware instances (same labels).
        names: labels for the middlewares, in order.
    """

    def __init__(
        self,
        *,
        rooms: Iterable[Any] = (),
        backpressure: Iterable[Any] = (),
        ratelimit: Iterable[Any] = (),
        resume: Iterable[Any] = (),
        connlimit: Iterable[Any] = (),
        names: Sequence[str] = (),
    ) -> None:
        self.rooms = list(rooms)
        self.backpressure = list(backpressure)
        self.ratelimit = list(ratelimit)
        self.resume = list(resume)
        self.connlimit = list(connlimit)
        self.names = list(names)
        _families()  # fail at registration, not at the first scrape

    def _name(self, index: int) -> str:
        return self.names[index] if index < len(self.names) else str(index)

    def collect(self) -> Iterator[Any]:
        counter, gauge = _families()
        yield gauge(
            "asgi_ws_connections_open", "WebSocket connections with an asgi_ws shell, open now", value=COUNTS.open
        )
        yield counter("asgi_ws_connections", "WebSocket connections with an asgi_ws shell", value=COUNTS.total)
        closes = counter("asgi_ws_library_closes", "Connections closed by asgi_ws, by close code", labels=["code"])
        for code, count in sorted(COUNTS.closed_by_code.items()):
            closes.add_metric([str(code)], count)
        yield closes
        refusals = counter(
            "asgi_ws_handshakes_refused",
            "Handshakes refused by asgi_ws (every refusal passes asgi_ws.deny), by refusing middleware, "
            "HTTP status and reason",
            labels=["refused_by", "status", "reason"],
        )
        for (refused_by, status, reason), count in sorted(REFUSED.items()):
            refusals.add_metric([refused_by, str(status), reason], count)
        yield refusals

        outbound = {name: counter(f"asgi_ws_outbound_{name}", help_, labels=["middleware"]) for name, help_ in (
            ("sent", "Application messages written"),
            ("dropped", "Messages dropped by an overflow policy"),
            ("conflated", "Messages replaced by a newer one with the same key"),
            ("closed_for_slowness", "Slow consumers closed by the close policy"),
            ("batches", "Batch frames written to clients that asked for them (each holds several messages)"),
        )}  # fmt: skip
        queued = gauge(
            "asgi_ws_outbound_queued", "Application messages waiting in outbound queues", labels=["middleware"]
        )
        backlogged = gauge("asgi_ws_outbound_backlogged", "Connections with a blocked write", labels=["middleware"])
        for index, middleware in enumerate(self.backpressure):
            totals, label = middleware.totals, [self._name(index)]
            for name, family in outbound.items():
                family.add_metric(label, getattr(totals, name))
            queued.add_metric(label, totals.queued)
            backlogged.add_metric(label, totals.backlogged)
        yield from outbound.values()
        yield queued
        yield backlogged

        limits = {name: counter(f"asgi_ws_ratelimit_{name}", help_, labels=["middleware"]) for name, help_ in (
            ("dropped", "Inbound messages dropped over the rate limit"),
            ("delayed", "Inbound messages delayed to the rate limit"),
            ("closed", "Connections closed over the rate limit"),
            ("oversized", "Connections closed for an oversized message"),
        )}  # fmt: skip
        for index, middleware in enumerate(self.ratelimit):
            for name, family in limits.items():
                family.add_metric([self._name(index)], getattr(middleware.stats, name))
        yield from limits.values()

        sessions = {name: counter(f"asgi_ws_resume_{name}", help_, labels=["middleware"]) for name, help_ in (
            ("created", "Resumable sessions started"),
            ("resumed", "Sessions resumed by a reconnecting client"),
            ("replayed", "Messages replayed or filled in to resuming clients"),
        )}  # fmt: skip
        refused = counter("asgi_ws_resume_refused", "Resume requests refused, by code", labels=["middleware", "code"])
        live = gauge("asgi_ws_resume_live_sessions", "Sessions held by a socket of this process", labels=["middleware"])
        for index, middleware in enumerate(self.resume):
            label = [self._name(index)]
            for name, family in sessions.items():
                family.add_metric(label, middleware.stats[name])
            for code, count in sorted(middleware.refused_by_code.items()):
                refused.add_metric([*label, code], count)
            live.add_metric(label, len(middleware.live))
        yield from sessions.values()
        yield refused
        yield live

        limited = gauge(
            "asgi_ws_connlimit_open", "Connections admitted by a connection limit, open now", labels=["middleware"]
        )
        ceiling = gauge("asgi_ws_connlimit_max", "max_connections of a connection limit", labels=["middleware"])
        over = counter(
            "asgi_ws_connlimit_refused",
            "Handshakes refused over a limit (global, ip, user)",
            labels=["middleware", "limit"],
        )
        for index, middleware in enumerate(self.connlimit):
            label = [self._name(index)]
            limited.add_metric(label, middleware.open)
            if middleware.counter.max_connections is not None:
                ceiling.add_metric(label, middleware.counter.max_connections)
            for limit, count in middleware.refused.items():
                over.add_metric([*label, limit], count)
        yield limited
        yield ceiling
        yield over

        rooms = {name: counter(f"asgi_ws_rooms_{name}", help_, labels=["namespace"]) for name, help_ in (
            ("published", "Messages published through Rooms"),
            ("delivered", "Messages handed to local members"),
            ("dropped", "Deliveries refused by a member's overflow policy"),
            ("received", "Messages received from other processes"),
            ("malformed", "Broker messages that were not asgi_ws envelopes"),
            ("broker_disconnects", "Times the broker connection was lost"),
            ("broker_lost_seconds", "Seconds without a broker connection (messages may be lost)"),
        )}  # fmt: skip
        local_rooms = gauge("asgi_ws_rooms_local_rooms", "Rooms with a local member", labels=["namespace"])
        local_members = gauge(
            "asgi_ws_rooms_local_members", "Connections that are members of a room", labels=["namespace"]
        )
        for instance in self.rooms:
            label = [instance.namespace]
            for name, family in rooms.items():
                family.add_metric(label, getattr(instance.stats, name))
            local_rooms.add_metric(label, len(instance._rooms))
            local_members.add_metric(label, len(instance._members))
        yield from rooms.values()
        yield local_rooms
        yield local_members


__all__ = ["AsgiWsCollector"]
