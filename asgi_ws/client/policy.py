"""The client's decisions, free of I/O: backoff delays, what a close code means, heartbeat and acks.

:class:`~asgi_ws.client.Client` only moves frames; whether to reconnect, how long to wait,
when to ping and when to acknowledge are decided here, by functions a unit test calls with
plain numbers.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Literal

from ..close_codes import CloseCode
from ..exceptions import ConfigurationError

#: What to do after a connection ended or a handshake failed.
#: ``reconnect``: wait the backoff delay and connect again; ``end``: stop without an error
#: (the server closed normally); ``stop``: stop and raise the reason to the application.
Action = Literal["reconnect", "end", "stop"]

#: Close codes after which the client does not come back (see the table in docs/client.md).
STOP_CODES: frozenset[int] = frozenset(
    {
        CloseCode.UNSUPPORTED_DATA,  # 1003: the endpoint does not take this kind of data: a bug to fix
        CloseCode.INVALID_PAYLOAD,  # 1007: the client sent malformed data: a bug to fix
        CloseCode.CREDENTIALS_REVOKED,  # 4403: access was withdrawn
        CloseCode.SESSION_REPLACED,  # 4409: the session now lives on another socket
    }
)

#: Close codes of a server going away (a drain's 1001) or restarting (uvicorn's 1012): the
#: service itself is fine, another worker (or the restarted one) takes the client now, so the
#: first reconnection after one waits only ``Backoff.restart_jitter``, not the backoff.
RESTART_CODES: frozenset[int] = frozenset({CloseCode.GOING_AWAY, CloseCode.SERVICE_RESTART})

#: HTTP statuses of a refused handshake that are worth another attempt.
RETRY_STATUSES: frozenset[int] = frozenset({408, 425, 429})

#: Seconds: the shortest heartbeat interval and timeout the client takes from a ``welcome``
#: (a server announcing less, 1e-9 say, would otherwise have it ping in a busy loop).
MIN_HEARTBEAT = 0.1

#: The client acknowledges at least every this many data frames (resumption).
ACK_EVERY = 100
#: ...and otherwise at most once per this many seconds, when its count advanced.
ACK_INTERVAL = 1.0


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter between reconnection attempts.

    The delay before reconnection attempt ``n`` (0 for the first) is drawn uniformly from
    ``[0, min(cap, base * 2**n)]``: "full jitter", which spreads the reconnections of many
    clients dropped at once (a server restart) instead of bringing them back in waves.

    Args:
        base: seconds; the ceiling of the first delay (default 0.5).
        cap: seconds; no delay is ever longer (default 30).
        max_attempts: reconnection attempts in a row before the client gives up and raises
            :class:`~asgi_ws.client.ClientGaveUp` (default None: never give up; 0: never
            reconnect).
        reset_after: seconds a connection must stay up for the attempt counter to go back
            to 0 (default 10), so a server that accepts and drops at once is not hammered.
        restart_jitter: seconds; after a close with 1001 or 1012 (:data:`RESTART_CODES`) the
            first attempt waits a delay drawn from ``[0, restart_jitter]`` instead of the
            backoff (default 0.25: the clients of a drained worker come back at once, spread
            over a quarter of a second rather than all in the same millisecond).
    """

    base: float = 0.5
    cap: float = 30.0
    max_attempts: int | None = None
    reset_after: float = 10.0
    restart_jitter: float = 0.25

    def __post_init__(self) -> None:
        if not self.base > 0 or not self.cap >= self.base:
            raise ConfigurationError("Backoff needs base > 0 and cap >= base (seconds)")
        if self.max_attempts is not None and self.max_attempts < 0:
            raise ConfigurationError("Backoff max_attempts must be >= 0, or None to retry forever")
        if not self.reset_after >= 0:
            raise ConfigurationError("Backoff reset_after must be >= 0 seconds")
        if not self.restart_jitter >= 0:
            raise ConfigurationError("Backoff restart_jitter must be >= 0 seconds")

    def ceiling(self, attempt: int) -> float:
        """The longest delay before attempt ``attempt`` (0-based): ``min(cap, base * 2**attempt)``."""
        if attempt >= 64:  # 2**64 * base is past any sensible cap; avoid huge integers
            return self.cap
        return min(self.cap, self.base * 2.0**attempt)

    def delay(self, attempt: int, random: Callable[[], float] = _random.random) -> float:
        """A delay drawn uniformly from ``[0, ceiling(attempt)]`` (``random`` returns ``[0, 1)``)."""
        return random() * self.ceiling(attempt)


class Attempts:
    """Counts reconnection attempts in a row for one client and draws their delays.

    Args:
        backoff: the policy.
        random: source of ``[0, 1)`` numbers (tests pass a fixed one).
    """

    def __init__(self, backoff: Backoff, random: Callable[[], float] = _random.random) -> None:
        self.backoff = backoff
        self.random = random
        #: Reconnection attempts made since the last stable connection.
        self.attempt = 0
        self._up_since: float | None = None

    def connected(self, now: float) -> None:
        """A connection opened at ``now`` (seconds on any monotonic clock)."""
        self._up_since = now

    def next_delay(self, now: float, code: int | None = None) -> float | None:
        """After a failure or a drop at ``now``: the delay before the next attempt, or None to give up.

        A connection that stayed up ``reset_after`` seconds or more resets the count first.
        ``code`` is the close code of the connection that ended (None for a failed attempt):
        after 1001/1012 the first attempt in a row waits only ``restart_jitter``; it still
        counts, so a server that keeps accepting and going away gets the backoff.
        """
        if self._up_since is not None and now - self._up_since >= self.backoff.reset_after:
            self.attempt = 0
        self._up_since = None
        limit = self.backoff.max_attempts
        if limit is not None and self.attempt >= limit:
            return None
        if code in RESTART_CODES and self.attempt == 0:
            delay = self.random() * self.backoff.restart_jitter
        else:
            delay = self.backoff.delay(self.attempt, self.random)
        self.attempt += 1
        return delay


def close_action(code: int, *, can_refresh: bool, stop_codes: Collection[int] = ()) -> Action:
    """What to do after the server closed the connection with ``code``.

    Args:
        code: the close code received (1006 when the connection dropped without one).
        can_refresh: whether the client can fetch fresh credentials (``ticket`` is a
            callable); 4401 is then retried with a new ticket, otherwise it stops.
        stop_codes: application codes that also mean "don't come back".
    """
    if code == CloseCode.NORMAL_CLOSURE:
        return "end"
    if code in STOP_CODES or code in stop_codes:
        return "stop"
    if code == CloseCode.CREDENTIALS_EXPIRED:
        return "reconnect" if can_refresh else "stop"
    return "reconnect"


def refusal_action(status: int, *, can_refresh: bool) -> Action:
    """What to do after the server refused the handshake with HTTP ``status``.

    Server errors (5xx), 408, 425 and 429 are retried; 401 is retried when a fresh ticket can
    be fetched; every other status (403 forbidden origin, 404 wrong path...) stops: trying
    again would get the same answer.
    """
    if status >= 500 or status in RETRY_STATUSES:
        return "reconnect"
    if status == 401 and can_refresh:
        return "reconnect"
    return "stop"


HeartbeatAction = Literal["wait", "ping", "dead"]


def heartbeat_step(
    now: float, *, last_received: float, ping_sent_at: float | None, interval: float, timeout: float
) -> HeartbeatAction:
    """Whether the client should ping the server now, or treat the connection as dead.

    The client pings after ``interval`` seconds without any frame from the server; a ping
    is answered by any frame arriving after it; with none within ``timeout`` seconds the
    connection is dead (a silent network drop the TCP stack has not noticed).
    """
    if ping_sent_at is not None and last_received < ping_sent_at:
        return "dead" if now - ping_sent_at >= timeout else "wait"
    return "ping" if now - last_received >= interval else "wait"


def ack_due(count: int, acked: int, now: float, last_ack_at: float) -> bool:
    """Whether to send ``{"$ws":"ack","seq":count}`` now, from the once-a-second timer."""
    return count > acked and now - last_ack_at >= ACK_INTERVAL


__all__ = [
    "ACK_EVERY",
    "ACK_INTERVAL",
    "MIN_HEARTBEAT",
    "RESTART_CODES",
    "RETRY_STATUSES",
    "STOP_CODES",
    "Action",
    "Attempts",
    "Backoff",
    "HeartbeatAction",
    "ack_due",
    "close_action",
    "heartbeat_step",
    "refusal_action",
]
