"""What a resuming client is owed: its session's entries after its count, made into messages.

:func:`catch_up` reads a session's state (its entries from the one holding the client's next
seq, its memberships, its rooms' cursors) and the rooms' histories, and returns the
:class:`Catchup`: the messages to replay (frames as stored; the messages of each room run,
from the room's history, by position: the k-th seq of a run after ``"E-a"`` is the message at
``"E-(a+k)"``), the run that live messages continue, and each other room's messages published
after its cursor (numbered after the replay, as new runs). It changes nothing, so a resume
calls it before its takeover, to refuse while nothing is touched (``gap_too_old`` when a
history no longer reaches back to what is owed, ``seq_ahead`` when the client counts more than
its open run's room ever carried), and again after it when the state moved meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..brokers.base import position_key
from ..brokers.history import position
from ..delivery import RoomsLike
from ..types import Message
from .frames import message_of
from .stores.base import Run, SessionState, extents
from .tokens import ResumeRefused


@dataclass(slots=True)
class Catchup:
    """What a resume sends, and where the session goes on from."""

    #: The missed messages, seqs ``after + 1`` on, in order.
    replay: list[Message] = field(default_factory=list)
    #: ``(room, last position)`` of the open run that live messages of the room continue.
    open_run: tuple[str, str] | None = None
    #: room -> the newest position the replay and the fills cover (live messages up to it are dropped).
    reached: dict[str, str] = field(default_factory=dict)
    #: room -> its messages after its cursor, numbered after the replay.
    fills: dict[str, list[tuple[str, Message]]] = field(default_factory=dict)
    #: A room's gap could not be filled (its broker keeps no history, or it has no cursor).
    gap: bool = False


async def catch_up(state: SessionState, after: int, rooms: RoomsLike | None) -> Catchup:
    """The :class:`Catchup` of a client that counted ``after`` data frames.

    Raises:
        ResumeRefused: ``gap_too_old`` (a history no longer holds what is owed),
            ``seq_ahead`` (the client counts more than was numbered), ``store_unavailable``
            (a history cannot be read).
    """
    result = Catchup()
    for first, last, item in extents(state.entries, state):
        start = max(first, after + 1)
        if isinstance(item, Run):
            if last is not None and start > last:
                continue
            await _run(result, rooms, item, first, last, start, after)
        else:
            result.replay += [message_of(frame) for frame in item[start - first :]]
    if result.open_run is not None and result.open_run[0] not in state.rooms:
        result.open_run = None  # left, and the end was not stored: the run does not go on
    if rooms is None:
        result.gap = bool(state.rooms)
        return result
    open_room = result.open_run[0] if result.open_run is not None else None
    for room, membership in state.rooms.items():
        if room == open_room:
            continue
        cursor = _later(state.cursors.get(room), result.reached.get(room))
        if not rooms.history or cursor is None:
            result.gap = True
            continue
        missed = await _missed(rooms, room, membership.format, cursor)
        if missed:
            result.fills[room] = result.fills.get(room, []) + missed
            result.reached[room] = missed[-1][0]
    return result


async def _run(
    result: Catchup, rooms: RoomsLike | None, run: Run, first: int, last: int | None, start: int, after: int
) -> None:
    """The messages of ``run`` (seqs ``first..last``, ``last`` None: open) from seq ``start``."""
    if rooms is None or not rooms.history:
        raise ResumeRefused("gap_too_old", f"the history of room {run.room!r} is not kept by this server's rooms")
    epoch, base = position_key(run.after)
    at = base + start - first  # the position number of seq start - 1
    # The client's own last message of the run (if any) is asked for too: it must exist.
    probe = at - 1 if after >= first else at
    until = position(epoch, base + last - first + 1) if last is not None else None  # the run's last message
    missed = await _missed(rooms, run.room, run.format, position(epoch, probe), until)
    if after >= first:
        if not missed and last is None:  # the open run's room never carried the client's last message
            raise ResumeRefused("seq_ahead", f"room {run.room!r} carried fewer messages than the client counted")
        if not missed or missed[0][0] != position(epoch, at):
            raise _too_old(run.room)
        missed = missed[1:]
    # The history is consecutive (brokers/history.py): the run's messages are a prefix of it,
    # within the run's epoch, and no further than the run's last seq.
    count = len(missed) if last is None else min(len(missed), last - start + 1)
    while count and position_key(missed[count - 1][0]) != (epoch, at + count):
        count -= 1  # past the run's epoch: the history was created again
    if last is not None and count < last - start + 1:
        raise _too_old(run.room)  # the history no longer holds all of a closed run
    result.replay += [message for _, message in missed[:count]]
    reached = position(epoch, at + count)
    result.reached[run.room] = reached
    if last is None:
        result.open_run = (run.room, reached)
        rest = missed[count:]  # past the run's epoch (the history was created again): new runs
        if rest:
            result.fills[run.room] = rest
            result.reached[run.room] = rest[-1][0]


async def _missed(
    rooms: RoomsLike, room: str, fmt: str, after: str, until: str | None = None
) -> list[tuple[str, Message]]:
    try:
        missed = await rooms.missed(room, fmt, after, until)
    except Exception as exc:
        raise ResumeRefused("store_unavailable", f"the history of room {room!r} is unavailable") from exc
    if missed is None:
        raise _too_old(room)
    return missed


def _too_old(room: str) -> ResumeRefused:
    return ResumeRefused("gap_too_old", f"the history of room {room!r} no longer reaches back that far")


def _later(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a or b
    return a if position_key(a) >= position_key(b) else b


__all__ = ["Catchup", "catch_up"]
