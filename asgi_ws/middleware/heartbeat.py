"""HeartbeatMiddleware: find dead connections and close them; keep idle ones alive through proxies.

Browsers cannot send protocol-level ping frames and ASGI hides them from applications, so
the heartbeat is spoken in-band with the control protocol (``docs/protocol.md``): a client
that said ``hello`` is pinged with ``{"$ws":"ping","id":n}`` once ``interval`` seconds pass
without a message from it, and must show a sign of life within ``timeout`` (a ``pong``, or any
message). A plain client that never says ``hello`` is never pinged; ``idle_timeout`` closes
such connections when no message passes either way for that long.

Every connection's deadline lives in the one :mod:`~asgi_ws.timers` service; the per-message
cost is storing the loop time of the last inbound message.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal

from ..close_codes import CloseCode, check_close_code
from ..connection import Connection, attach_session
from ..exceptions import ConfigurationError
from ..protocol import field
from ..timers import Timer, TimerService, timer_service
from ..types import ASGIApp, Receive, Scope, Send

Action = Literal["wait", "ping", "timeout", "idle"]


@dataclass(frozen=True, slots=True)
class HeartbeatPolicy:
    """When to ping, when to give up: the decisions of the heartbeat, free of I/O.

    Args:
        interval: seconds without an inbound message before the server pings (opted-in
            clients only); None: never ping.
        timeout: seconds a pinged client has to show a sign of life; None: pings go out
            every interval and a missing answer closes nothing.
        idle_timeout: seconds without any message either way before the connection is
            closed; None: never. Heartbeat pings and pongs do not count as messages.
    """

    interval: float | None = 20.0
    timeout: float | None = 20.0
    idle_timeout: float | None = None

    def __post_init__(self) -> None:
        _check_seconds("interval", self.interval, "None to never ping")
        _check_seconds("timeout", self.timeout, "None to ping without ever closing")
        _check_seconds("idle_timeout", self.idle_timeout, "None to never close idle connections")

    def step(
        self,
        now: float,
        *,
        opted_in: bool,
        last_inbound: float,
        last_activity: float,
        ping_sent_at: float | None,
    ) -> tuple[Action, float | None]:
        """Return what to do now and when to look again (None: no deadline left).

        ``last_inbound`` is the time of the last message from the client (control messages
        included), ``last_activity`` of the last application message either way, and
        ``ping_sent_at`` of the ping still awaiting a sign of life (None when none is).
        """
        deadlines: list[float] = []
        if self.idle_timeout is not None:
            idle_at = last_activity + self.idle_timeout
            if now >= idle_at:
                return "idle", None
            deadlines.append(idle_at)
        if opted_in and self.interval is not None:
            unanswered = ping_sent_at is not None and last_inbound < ping_sent_at
            if unanswered and self.timeout is not None:
                assert ping_sent_at is not None
                expires_at = ping_sent_at + self.timeout
                if now >= expires_at:
                    return "timeout", None
                deadlines.append(expires_at)
            else:
                # Without a timeout an unanswered ping is followed by the next one an interval
                # later: the pings keep proxies from closing the connection, nothing more.
                ping_at = (ping_sent_at if unanswered else last_inbound) + self.interval  # type: ignore[operator]
                if now >= ping_at:
                    return "ping", min([now + (self.timeout or self.interval), *deadlines])
                deadlines.append(ping_at)
        return "wait", min(deadlines) if deadlines else None


def _check_seconds(name: str, value: float | None, none_means: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ConfigurationError(f"{name} must be a positive number of seconds, or {none_means}; got {value!r}")


#: The ``ping`` control message, formatted without the JSON encoder (as ``protocol.encode`` writes it).
_PING = '{"$ws":"ping","id":%d}'


class _Heartbeat:
    """The heartbeat of one connection: its timer and the ping awaiting an answer.

    One exists per open connection: its slots are a per-connection cost, so what every
    connection of a middleware shares (the policy, the close codes) stays on the middleware.
    """

    __slots__ = ("conn", "middleware", "next_id", "ping_sent_at", "rtt", "timer")

    def __init__(self, conn: Connection, middleware: HeartbeatMiddleware) -> None:
        self.conn = conn
        self.middleware = middleware
        self.next_id = 1
        self.ping_sent_at: float | None = None
        #: Round-trip time in seconds of the last answered server ping, once there is one.
        self.rtt: float | None = None
        self.timer: Timer | None = None

    @property
    def policy(self) -> HeartbeatPolicy:
        return self.middleware.policy

    def arm(self) -> None:
        self.check()

    def stop(self) -> None:
        """The connection ended: its timer goes with it."""
        timer, self.timer = self.timer, None
        if timer is not None:
            timer.cancel()

    def check(self) -> None:
        """Decide, act, and re-arm: until the connection closes, a heartbeat always has a live
        timer, whatever sending the ping did (a failed write is the connection's to report)."""
        conn = self.conn
        if conn.ended or conn.close_code is not None:
            return
        middleware = self.middleware
        now = conn.time()
        router = conn.control
        action, next_at = middleware.policy.step(
            now,
            opted_in=router.opted_in,
            last_inbound=conn.last_inbound,
            last_activity=conn.last_activity,
            ping_sent_at=self.ping_sent_at,
        )
        if action == "timeout":
            conn.close(middleware.close_codes[0], "heartbeat timeout")
        elif action == "idle":
            conn.close(middleware.close_codes[1], "idle timeout")
        if conn.close_code is not None:
            return
        timer = self.timer
        if timer is not None:
            timer.cancel()
        # Not conn.call_later: the connection's end stops the heartbeat itself (stop()), so
        # its timers need no list of the connection's.
        self.timer = None if next_at is None else middleware.timers().call_later(max(0.0, next_at - now), self.check)
        if action == "ping":  # armed first: the ping's deadline stands even if writing it fails
            self.ping_sent_at = now
            ping_id = self.next_id
            self.next_id = ping_id + 1
            conn.outbound.send_control(_PING % ping_id)

    def take(self, text: str) -> bool:
        """Handle ``text`` if it is a ping or pong exactly as the clients write them
        (``{"$ws":"pong","id":7}``): as the router's handlers would, without decoding JSON.
        Anything else (other spacing, other fields) is left to the router: returns False."""
        if text.startswith(_PONG_HEAD):
            digits = text[_HEAD_LENGTH:-1]
            if not _plain_id(text, digits):
                return False
            if self.ping_sent_at is not None and int(digits) == self.next_id - 1:
                self.rtt = self.conn.time() - self.ping_sent_at
            self.ping_sent_at = None
            return True
        if text.startswith(_PING_HEAD):
            digits = text[_HEAD_LENGTH:-1]
            if not _plain_id(text, digits):
                return False
            self.conn.outbound.send_control(_PONG_HEAD + digits + "}")
            return True
        return False


_PONG_HEAD = '{"$ws":"pong","id":'
_PING_HEAD = '{"$ws":"ping","id":'
_HEAD_LENGTH = len(_PONG_HEAD)


def _plain_id(text: str, digits: str) -> bool:
    """True when ``text`` ends with ``digits}``, ``digits`` a JSON integer of at most 15 digits
    (below 2**53: a safe integer for every client), no sign, no leading zero."""
    return (
        text[-1] == "}"
        and 0 < len(digits) <= 15
        and digits.isascii()
        and digits.isdigit()
        and (digits[0] != "0" or len(digits) == 1)
    )


def _on_ping(conn: Connection, message: dict[str, Any]) -> None:
    """A client ping: answer at once with the same id."""
    ping_id = message.get("id")
    conn.control.send("pong", {} if ping_id is None else {"id": ping_id})


def _on_pong(conn: Connection, message: dict[str, Any]) -> None:
    heartbeat: _Heartbeat = conn.heartbeat
    ping_id = field(message, "id", int, required=False)
    if heartbeat.ping_sent_at is not None and ping_id == heartbeat.next_id - 1:
        heartbeat.rtt = conn.time() - heartbeat.ping_sent_at
    heartbeat.ping_sent_at = None


class HeartbeatMiddleware:
    """Close dead connections, keep idle ones alive, answer client pings.

    Args:
        app: the ASGI application to wrap.
        interval: seconds of silence from an opted-in client before the server pings it
            (default 20). None: never ping (client pings are still answered).
        timeout: seconds a pinged client has to answer (default 20); then the connection
            is closed with 4408 ``heartbeat timeout``. None: never close for a missing answer
            (the pings only keep proxies from closing idle connections).
        idle_timeout: seconds without any application message either way before the
            connection is closed with 4410 ``idle timeout`` (default None: never). Applies
            to every client, including those that never speak the control protocol.
        close_code: code for a heartbeat timeout (default 4408).
        idle_close_code: code for an idle timeout (default 4410).

    The round-trip time of the last answered ping is in ``connection_of(scope).heartbeat.rtt``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        interval: float | None = 20.0,
        timeout: float | None = 20.0,
        idle_timeout: float | None = None,
        close_code: int = CloseCode.HEARTBEAT_TIMEOUT,
        idle_close_code: int = CloseCode.IDLE_TIMEOUT,
    ) -> None:
        self.app = app
        self.policy = HeartbeatPolicy(interval, timeout, idle_timeout)
        self.close_codes = (check_close_code(close_code), check_close_code(idle_close_code, "idle_close_code"))
        # Announced in every welcome: built once, shared by every connection.
        self.announcement = {"interval": interval, "timeout": timeout}
        self._timers: tuple[asyncio.AbstractEventLoop, TimerService] | None = None

    def timers(self) -> TimerService:
        """The timer service of the running loop (remembered: asked once per heartbeat round)."""
        loop = asyncio.get_running_loop()
        cached = self._timers
        if cached is None or cached[0] is not loop:
            cached = self._timers = (loop, timer_service())
        return cached[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        scope, conn, receive, send = attach_session(scope, receive, send)
        if conn.heartbeat is not None:
            raise ConfigurationError("two HeartbeatMiddleware layers on one connection: keep one")
        heartbeat = conn.heartbeat = _Heartbeat(conn, self)
        conn.track(inbound=True, activity=self.policy.idle_timeout is not None)
        router = conn.control
        router.register("ping", _on_ping)
        router.register("pong", _on_pong)
        if self.policy.interval is not None:
            router.announce("heartbeat", self.announcement)
            router.on_opt_in(heartbeat.check)
        conn.on_accept(heartbeat.arm)  # its timers are the connection's: they end with it
        await conn.run(self.app, scope, receive, send)


__all__ = ["HeartbeatMiddleware", "HeartbeatPolicy"]
