"""Exceptions raised by the Python client, under the library's root :class:`~asgi_ws.exceptions.AsgiWsError`::

    AsgiWsError
    └── ClientError
        ├── ClientClosed (ConnectionError)    the client stopped for good; carries .code, .reason
        │   ├── ClientGaveUp                  reconnection attempts exhausted; carries .attempts
        │   ├── ServerClosed                  the server closed with a code that is not retried
        │   └── HandshakeRefused              the server refused the handshake; carries .status
        ├── SendBufferFull                    too many messages waiting for a reconnection
        ├── RequestRefused                    the server answered a request with an error; .code, .message
        └── RequestInterrupted (ConnectionError)  the connection dropped before the server answered

Errors the server sends on its own (``{"$ws":"error",...}``) are never raised: they are logged
and reported as ``error`` events. Only a request the caller awaits (``subscribe``,
``unsubscribe``, ``publish``) raises :class:`RequestRefused`.
"""

from __future__ import annotations

from ..exceptions import AsgiWsError


class ClientError(AsgiWsError):
    """Root of the exceptions raised by :mod:`asgi_ws.client`."""


class ClientClosed(ClientError, ConnectionError):
    """Raised by ``send``/``recv`` (and ends iteration) once the client stopped for good.

    Raised as is after :meth:`~asgi_ws.client.Client.close` or after the server closed the
    connection normally (1000); the subclasses say why the client stopped otherwise.

    Args:
        code: the close code that ended the client, when there was one.
        reason: the close reason, or a description of the failure.
    """

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"client closed (code {code}): {reason}" if reason else f"client closed (code {code})")
        self.code = code
        self.reason = reason


class ClientGaveUp(ClientClosed):
    """Raised when ``Backoff.max_attempts`` reconnection attempts in a row failed.

    ``__cause__`` is the exception of the last failed attempt, when it was one.

    Args:
        attempts: the reconnection attempts made since the last stable connection.
        code: close code of the last connection, if the last failure was a close.
        reason: what the last failure was.
    """

    def __init__(self, attempts: int, code: int | None = None, reason: str = "") -> None:
        super().__init__(code, reason)
        self.args = (f"gave up after {attempts} reconnection attempt(s); last failure: {reason or code}",)
        self.attempts = attempts


class ServerClosed(ClientClosed):
    """Raised when the server closed the connection with a code that means "don't come back".

    See the close-code table in ``docs/client.md`` (4403 revoked, 4409 session replaced,
    1003, 1007, and 4401 without a ticket callable).
    """


class HandshakeRefused(ClientClosed):
    """Raised when the server refused the handshake with an HTTP status that is not retried.

    Args:
        status: the HTTP status (401, 403, 404...).
        reason: the response body, cut to 200 characters.
    """

    def __init__(self, status: int, reason: str = "") -> None:
        super().__init__(None, reason)
        self.args = (f"handshake refused with HTTP {status}: {reason}",)
        self.status = status


class SendBufferFull(ClientError):
    """Raised by ``send`` while disconnected when ``max_pending`` messages already wait.

    The message was not queued; the caller decides whether to drop it or retry later.
    """


class RequestRefused(ClientError):
    """Raised by ``subscribe``, ``unsubscribe`` and ``publish`` when the server answers with an error.

    Args:
        code: the protocol error code (``forbidden``, ``too_large``, ``unknown_op``...).
        message: the server's explanation.
        ref: the operation the error refers to.
    """

    def __init__(self, code: str, message: str, ref: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.ref = ref


class RequestInterrupted(ClientError, ConnectionError):
    """Raised by ``publish`` when the connection dropped before the server confirmed it.

    The publish may or may not have reached the server; it is not re-sent, so that a
    reconnection never publishes a message twice.
    """


__all__ = [
    "ClientClosed",
    "ClientError",
    "ClientGaveUp",
    "HandshakeRefused",
    "RequestInterrupted",
    "RequestRefused",
    "SendBufferFull",
    "ServerClosed",
]
