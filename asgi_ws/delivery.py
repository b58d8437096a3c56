"""The one delivery path of a connection, and the protocols at the seams of Rooms and resumption.

Everything a connection is handed by the library's fan-out (Rooms, and so PubSubApp) goes to
the connection's **sink**: ``sink.deliver(message, mark) -> bool``, called without awaiting,
True when the message was accepted. By default the sink is the connection's outbound path
(:meth:`asgi_ws.outbound.Outbound.offer`, which ignores the mark); a resumable session
installs itself in its place (``conn.sink = session``) and numbers what it is handed.

``mark`` tells where a room message comes from when the broker keeps the room's history:
:class:`RoomMark` ``(room, position, prev)``, ``prev`` being the position of the room's message
before it (positions are consecutive, :mod:`asgi_ws.brokers.history`). A sink that sees
``prev`` equal to the last position it took from that room knows it missed nothing; a
resumable session then needs no store write, since the history can give the message again.

Rooms does not know what a sink is. A sink that follows its connection's memberships (a
resumable session restores them after a resume) implements :class:`MembershipSink` as well;
:class:`RoomsLike` is what ``ResumeMiddleware(rooms=...)`` asks of Rooms.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

from .types import Message


class RoomMark(NamedTuple):
    """Where a room message stands in its room's history (a broker with history).

    Attributes:
        room: the room.
        position: the message's position in the room's history.
        prev: the position of the room's message before it.
    """

    room: str
    position: str
    prev: str


class Membership(NamedTuple):
    """What a member's rejoin needs: how it gets the room's messages, and its presence.

    Attributes:
        format: ``"raw"`` or ``"channel"`` (see :meth:`asgi_ws.Rooms.join`).
        meta: the presence ``meta`` others see.
        watch: the connection gets ``presence_diff`` control frames for the room.
    """

    format: str
    meta: dict[str, Any]
    watch: bool = False


@runtime_checkable
class Sink(Protocol):
    """What a connection is handed through; ``deliver`` never raises and never awaits."""

    def deliver(self, message: Message, mark: RoomMark | None = None, /) -> bool: ...


@runtime_checkable
class MembershipSink(Sink, Protocol):
    """A sink told about its connection's memberships, as Rooms changes them."""

    def joined(self, room: str, membership: Membership, position: str | None) -> None:
        """``room`` was joined (or its membership changed); with a history broker, ``position``
        is the room's newest position when the subscription was up: what follows is the member's."""

    def left(self, room: str) -> None:
        """``room`` was left by the application (not because the connection ended)."""


class RoomsLike(Protocol):
    """What ResumeMiddleware asks of :class:`~asgi_ws.Rooms` to give a resumed session its rooms."""

    @property
    def history(self) -> bool:
        """True when the broker keeps the rooms' history."""

    async def join(
        self, room: str, member: Any, *, meta: dict[str, Any] | None = None, format: Any = "raw", watch: bool = False
    ) -> None: ...

    async def leave(self, room: str, member: Any) -> None: ...

    async def leave_all(self, member: Any) -> None: ...

    async def missed(
        self, room: str, fmt: Any, after: str, until: str | None = None
    ) -> list[tuple[str, Message]] | None: ...


__all__ = ["Membership", "MembershipSink", "RoomMark", "RoomsLike", "Sink"]
