"""One resumable session on one connection (``scope["asgi_ws"]["session"]``).

Its message engine (numbering, storing before sending, handing over) is
:class:`~asgi_ws.resume.numbering.Numbering`; :class:`Session` adds the rest of its life:
acknowledgements, tokens and renewals in the store, its end (kept for the window, or
forgotten on a normal close), the memberships Rooms tells it about (the
:class:`~asgi_ws.delivery.MembershipSink` protocol), and the steps of a resume, which the
middleware's handshake drives (docs/internals.md, "The resume, step by step").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from .._background import spawn
from ..brokers.base import position_key
from ..brokers.history import previous
from ..delivery import Membership, RoomMark
from ..outbound import SLOW
from ..types import Message
from .numbering import Numbering, SessionLimits, store_trouble
from .pending import MAX_BATCH

if TYPE_CHECKING:
    from ..connection import Connection

logger = logging.getLogger("asgi_ws.resume")


class Session(Numbering):
    """The resumable session of one connection (``scope["asgi_ws"]["session"]``).

    Attributes:
        id: the session id.
        resumed: True when this connection resumed an earlier session.
        seq: seq of the last data frame numbered.
        rooms: room -> :class:`~asgi_ws.delivery.Membership`, restored by a resume.
    """

    __slots__ = ()

    # -- acknowledgements and renewal ----------------------------------------------------------

    def ack(self, seq: int) -> None:
        """The client has every frame up to ``seq``: they need not be kept."""
        self._log.ack(seq)

    def _touch(self) -> Awaitable[bool | None]:
        """Extend the session's life and trim acked frames (memberships go with writes, in order)."""
        return self.store.touch(self.id, self.owner, self.keep_from(), self.limits.window, None, dict(self.cursors))

    def token(self) -> str:
        return self.signer.sign(self.id, self.identity, self.generation)

    def announce(self, op: str = "session", **extra: Any) -> None:
        """Tell the client its session (``session``/``resumed``) with a fresh token."""
        fields = {"id": self.id, "token": self.token(), "seq": self.offered, "window": self.limits.window, **extra}
        self.conn.control.send(op, fields)

    async def renew(self) -> bool:
        """Extend the session's life in the store, trim acked frames, send a fresh token.

        Returns False when the session was taken over by another connection or lost by the
        store (then closed with 4409 or 4404).
        """
        try:
            result = await self._touch()
        except Exception as exc:
            store_trouble.warning("session %s: could not renew it in the store: %s", self.id, exc, key="renew")
            return True
        if result is not True:
            if not self.detached:
                self._refused(result)
            return False
        if not self.conn.ended and not self.conn.closing:
            self.announce()
        return True

    async def finish(self, *, ended_by_client: bool) -> None:
        """The socket is gone: store what is pending, then keep the session for the window,
        or forget it when the client closed it for good (close code 1000)."""
        if (self._log.dirty or self._storing) and not self.detached:
            if self._drained is None:
                self._drained = asyncio.get_running_loop().create_future()
            self._mark()
            await self._drained
        self.detached = True
        self._direct = False
        try:
            if ended_by_client:
                await self.store.delete(self.id, self.owner)
            else:
                await self._touch()
        except Exception as exc:
            store_trouble.warning(
                "session %s: could not update the store at disconnect: %s", self.id, exc, key="disconnect"
            )

    # -- memberships (Rooms calls these: the MembershipSink protocol) -----------------------------

    def joined(self, room: str, membership: Membership, position: str | None) -> None:
        """A membership began or changed; with a history broker, the room's messages after
        ``position`` are the session's (a resume keeps an older cursor)."""
        if self.rooms.get(room) != membership:
            self.rooms[room] = membership
            self._log.rooms = dict(self.rooms)
            self._mark()
        if position is not None and room not in self.cursors and room != self._open:
            self.cursors[room] = position
            self._log.cursor(room, position)
            self._mark()

    def left(self, room: str) -> None:
        """The application left ``room``; leaving because the socket ended keeps the membership
        for a resume. A run of the room ends here (an end entry)."""
        if self.conn.ended or self.rooms.pop(room, None) is None:
            return
        self._log.rooms = dict(self.rooms)
        if room == self._open:
            self._close_open()
            self._log.end(self.seq + 1)
        self.cursors.pop(room, None)
        self._mark()

    # -- resuming (the middleware's resume calls these) -----------------------------------------

    def pause(self) -> None:
        """Before the takeover: nothing may be written (the store would refuse it, and close us)."""
        self._paused = True

    def unpause(self) -> None:
        self._paused = False
        if self._log.dirty:
            self._mark()

    def hold(self) -> None:
        """Hold released messages back until :meth:`replay` has sent the missed ones."""
        self._held = []
        self._direct = False

    def hold_live(self) -> None:
        """Keep live room messages aside, unnumbered, while a resume fills the rooms' gaps."""
        self._live_hold = []
        self._direct = False

    def continue_from(self, seq: int, offered: int, open_run: tuple[str, str] | None) -> None:
        """The session as taken over: ``seq`` numbered (the replay included), ``offered`` the
        client's count, and the open run (room, last position) that live messages continue."""
        self.seq = seq
        self.offered = offered
        self._log.ack(offered)  # the client has those
        if open_run is not None:
            self._open, self._open_last = open_run

    def fill(self, room: str, missed: list[tuple[str, Message]]) -> None:
        """Number the room messages the session missed (from the broker's history), in order."""
        held, self._live_hold = self._live_hold, None
        try:
            for position, message in missed:
                self._deliver(message, RoomMark(room, position, previous(position)))
        finally:
            self._live_hold = held

    def drop_live(self) -> None:
        """The resume failed: forget the live room messages kept aside."""
        self._live_hold = None
        self._update_direct()

    def release_live(self, reached: dict[str, str]) -> None:
        """Number the live room messages kept aside, except those the replay and the fill
        already covered (at or before ``reached[room]``)."""
        held, self._live_hold = self._live_hold or [], None
        for message, mark in held:
            cursor = reached.get(mark[0]) if mark is not None else None
            if mark is not None and cursor is not None and position_key(mark[1]) <= position_key(cursor):
                continue  # it came in the replay or the fill
            self._deliver(message, mark)
        self._update_direct()

    async def replay(self, messages: list[Message]) -> None:
        """Send the missed messages, in order, after ``resumed`` (they keep their seqs), then
        those held back meanwhile. Replay waits for room in the outbound queue rather than
        overflowing it."""
        outbound = self.conn.outbound
        write_now, send = outbound.write_now, outbound.send
        for message in messages:
            self.offered += 1
            if write_now(message) == SLOW:  # the queue is full (its policy is block): wait for room
                await send({**message, "asgi_ws": {"overflow": "block"}})
        held, self._held = self._held or [], None
        self.hand_over(held)


def session_of(conn: Connection) -> Session | None:
    """The resumable session of ``conn``, if it has one."""
    extras = conn._extras
    session = extras.get("session") if extras is not None else None
    return session if isinstance(session, Session) else None


__all__ = ["MAX_BATCH", "Session", "SessionLimits", "session_of", "spawn"]
