"""Exceptions raised by asgi_ws.

Every exception derives from :class:`AsgiWsError`, mixing in the standard exception a caller
would naturally catch (``ValueError`` for bad configuration, ``OSError`` for a closed
connection, as the ASGI spec asks of ``send`` on a closed socket). The tree::

    AsgiWsError
    ├── ConfigurationError (ValueError)
    ├── MissingDependencyError (ImportError)
    ├── HandshakeRejected                      carries .status, .reason, .headers, .detail
    │   ├── OriginRejected                     403
    │   ├── SubprotocolRejected                400
    │   ├── AuthenticationFailed               401
    │   │   └── CredentialsExpired             401
    │   └── PermissionDenied                   403
    ├── ConnectionClosed (OSError)             carries .code, .reason
    ├── BrokerError
    │   ├── BrokerUnavailable (ConnectionError)  the broker cannot be reached at start-up
    │   └── BrokerClosed                          used after close()
    ├── SubscriptionError                         a server-side room subscription, in asgi_ws.rooms
    │   ├── SubscriptionOverflow                  the consumer fell behind (policy "close"); carries .position
    │   └── HistoryGap                            after= is older than the history reaches
    └── ClientError                               the Python client's, in asgi_ws.client.exceptions

Handshake exceptions are raised by pluggable parts (auth backends, ``authorize`` hooks,
``select`` callables) and turned by the middleware into an HTTP refusal before accept.
"""

from __future__ import annotations

from collections.abc import Sequence


class AsgiWsError(Exception):
    """Root of every exception raised by asgi_ws."""


class ConfigurationError(AsgiWsError, ValueError):
    """Raised when a middleware, backend or broker is constructed with invalid options.

    The message names the parameter and says how to fix it.
    """


class MissingDependencyError(AsgiWsError, ImportError):
    """Raised when a feature needs an optional dependency that is not installed.

    The message names the extra to install, e.g. ``pip install 'asgi-ws[redis]'``.
    """


class HandshakeRejected(AsgiWsError):
    """Raised to refuse a WebSocket handshake before it is accepted.

    Args:
        reason: short, human-readable reason sent as the response body (or close reason)
            and written to the log. It must never contain a credential.
        status: HTTP status of the refusal.
        headers: extra response headers, such as ``WWW-Authenticate``.
        detail: the cause in full, written to the log line after the reason and never sent
            to the client (which check failed, what was expected). Never a credential.
    """

    status: int = 403

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        headers: Sequence[tuple[str, str]] = (),
        detail: str = "",
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        if status is not None:
            self.status = status
        self.headers = tuple(headers)
        self.detail = detail


class OriginRejected(HandshakeRejected):
    """Raised when the ``Origin`` header is missing, malformed or not allowed (403)."""

    status = 403


class SubprotocolRejected(HandshakeRejected):
    """Raised when no offered subprotocol is acceptable and one is required (400)."""

    status = 400


class AuthenticationFailed(HandshakeRejected):
    """Raised when credentials are missing, malformed, forged or unknown (401)."""

    status = 401


class CredentialsExpired(AuthenticationFailed):
    """Raised when credentials were valid but their expiry has passed (401)."""


class PermissionDenied(HandshakeRejected):
    """Raised when valid credentials do not grant access to this endpoint (403)."""

    status = 403


class ConnectionClosed(AsgiWsError, OSError):
    """Raised by ``send`` after asgi_ws closed the connection on its own initiative.

    The ASGI spec asks servers to raise an ``OSError`` subclass when the application
    sends on a closed connection; Starlette turns it into ``WebSocketDisconnect``.

    Args:
        code: the close code asgi_ws sent.
        reason: the close reason asgi_ws sent.
    """

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"connection closed by asgi_ws with code {code}: {reason}")
        self.code = code
        self.reason = reason


class BrokerError(AsgiWsError):
    """Raised when a message broker fails in a way the caller must know about."""


class BrokerUnavailable(BrokerError, ConnectionError):
    """Raised when a broker cannot be reached when connecting; the message names the URL (without password)."""


class BrokerClosed(BrokerError):
    """Raised when a broker is used after :meth:`~asgi_ws.brokers.Broker.close`."""


__all__ = [
    "AsgiWsError",
    "BrokerClosed",
    "BrokerError",
    "BrokerUnavailable",
    "AuthenticationFailed",
    "ConfigurationError",
    "ConnectionClosed",
    "CredentialsExpired",
    "HandshakeRejected",
    "MissingDependencyError",
    "OriginRejected",
    "PermissionDenied",
    "SubprotocolRejected",
]
