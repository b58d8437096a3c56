"""The client side of session resumption, free of I/O.

A resumable session is opted into at the handshake (``?ws_resume=new``); the server answers
``{"$ws":"session","id","token","seq","window"}`` and re-sends it with a fresh token while
the connection is up. After a drop the client reconnects with
``?ws_resume=<token>&ws_seq=<n>``, ``n`` being the number of data frames (every frame that
is not a control message) it received in the session; the server answers ``resumed`` and
replays what was missed, or ``resume_failed`` and starts a fresh session. A close with 4404
says the server's store lost the session: the next connection starts a new one.
:class:`ResumeState` keeps the token and the count and builds the query parameters.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, TypeGuard

from ..close_codes import CloseCode
from ..protocol import MAX_SAFE_INTEGER

logger = logging.getLogger("asgi_ws.client")


class ResumeState:
    """Token, session id and frame count of the client's resumable session.

    Args:
        enabled: False never asks for a session (``resume=False``).
    """

    __slots__ = ("acked", "enabled", "pending", "received", "session_id", "token", "window")

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        #: Id of the current session, once the server created one.
        self.session_id: str | None = None
        #: The newest resume token: the only one kept.
        self.token: str | None = None
        #: Seconds the server keeps the session after a drop, as it announced.
        self.window: float | None = None
        #: Data frames received in this session (the ``seq`` of the last one).
        self.received = 0
        #: The count last acknowledged to the server.
        self.acked = 0
        #: True from a connection that asked to resume until the server's answer.
        self.pending = False

    @property
    def active(self) -> bool:
        """Whether the server gave this client a session (so acks are worth sending)."""
        return self.token is not None

    def query(self) -> dict[str, str]:
        """The handshake query parameters of the next connection; also starts the connection.

        With a token: resume at the current count. Without: ask for a new session, whose
        count starts at 0.
        """
        if not self.enabled:
            return {}
        if self.token is None:
            self.pending = False
            self.received = self.acked = 0
            return {"ws_resume": "new"}
        self.pending = True
        return {"ws_resume": self.token, "ws_seq": str(self.received)}

    def count(self) -> int:
        """A data frame arrived: return its sequence number in the session."""
        self.received += 1
        return self.received

    def on_session(self, message: Mapping[str, Any]) -> None:
        """``session``: a new session, or a fresh token for the current one."""
        session_id, token = message.get("id"), message.get("token")
        if not isinstance(token, str) or not isinstance(session_id, str):
            logger.warning("asgi_ws client: ignored a session message without id or token")
            return
        if session_id != self.session_id:  # a new session: its count starts now
            self.received = self.acked = 0
        seq = message.get("seq")
        if isinstance(seq, int) and seq != self.received:
            # Expected when the server's queue was backlogged: its control frames overtake data.
            logger.debug(
                "asgi_ws client: session %s: the server counts %d frames sent, the client %d received",
                session_id, seq, self.received,
            )  # fmt: skip
        self.session_id, self.token = session_id, token
        self._window(message)

    def on_resumed(self, message: Mapping[str, Any]) -> list[str]:
        """``resumed``: keep the new token, take the server's count; return the restored rooms."""
        self.pending = False
        token, seq = message.get("token"), message.get("seq")
        if isinstance(token, str):
            self.token = token
        if isinstance(message.get("id"), str):
            self.session_id = message["id"]
        if _count(seq):  # the server numbers from there on (resume_mismatch tells a different one)
            self.received = seq
            self.acked = min(self.acked, seq)
        self._window(message)
        rooms = message.get("rooms")
        return [room for room in rooms if isinstance(room, str)] if isinstance(rooms, list) else []

    def on_resume_failed(self) -> bool:
        """``resume_failed``: the old session is gone; a ``session`` message starts the new one.

        Returns whether this connection had asked to resume (False when a new session could
        not be created: nothing was lost).
        """
        was_resuming = self.pending
        self.pending = False
        self.session_id = self.token = None
        self.received = self.acked = 0
        return was_resuming

    def on_close(self, code: int) -> bool:
        """The connection closed with ``code``; True when that lost the session.

        4404 (``session lost by the store``: flushed, evicted, expired while the socket was up):
        resuming it would only be refused, so the session is forgotten and the next connection
        asks for a new one. The frames the server numbered but did not store are lost.
        """
        if code != CloseCode.SESSION_LOST or self.token is None:
            return False
        self.session_id = self.token = None
        self.pending = False
        self.received = self.acked = 0
        return True

    def _window(self, message: Mapping[str, Any]) -> None:
        window = message.get("window")
        if isinstance(window, (int, float)) and not isinstance(window, bool):
            self.window = float(window)


def resume_mismatch(message: Mapping[str, Any], received: int) -> str | None:
    """What is wrong with a ``resumed`` message's ``seq``, or None when it is the client's count.

    A server resumes at the count the client sent (``ws_seq``): another ``seq`` means frames the
    client never got are skipped (ahead) or frames it has come again (behind); one that is not
    a count (a float, a bool, negative, beyond 2**53 - 1) is ignored.
    """
    seq = message.get("seq")
    if not _count(seq):
        return f"ignored the seq of a resumed message, which is not a count: {str(seq)[:40]}"
    if seq != received:
        return f"resumed at seq {seq} but the client had received {received} frames"
    return None


def _count(value: object) -> TypeGuard[int]:
    return type(value) is int and 0 <= value <= MAX_SAFE_INTEGER


__all__ = ["ResumeState", "resume_mismatch"]
