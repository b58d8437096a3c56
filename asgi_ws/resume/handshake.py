"""The resumable session of one connection, from the handshake to its end.

``ResumeMiddleware`` makes one :class:`SessionHandshake` per opted-in connection: it opens the
session when the application accepts (a new one, or a resume of the one the token names),
installs it as the connection's delivery sink, renews it every ``window / 3`` seconds, and
finishes it when the socket goes.

A resume is checked in full before anything changes: the token, the count, the user, the
session's state as the store has it (inspected, not claimed), what the rooms' histories can
give back (:func:`~asgi_ws.resume.catchup.catch_up`). Only a resume that will succeed takes the
session over, in one atomic store operation that checks the token's generation and the count
again; a refused resume never touches the socket that holds the session
(docs/internals.md, "The resume, step by step").
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import TYPE_CHECKING, Any

from .._background import spawn
from .._repeated import RepeatedLog
from .._scope import namespace, user_identity
from ..close_codes import CloseCode
from ..connection import Connection
from ..delivery import Membership
from ..protocol import field
from ..types import Message, Receive, Send
from .catchup import Catchup, catch_up
from .session import Session, session_of
from .stores.base import SessionState, check_takeover
from .tokens import ResumeRefused

if TYPE_CHECKING:
    from ..middleware.resume import ResumeMiddleware

logger = logging.getLogger("asgi_ws.resume")
#: A session store briefly unavailable (a burst of handshakes, an outage) fails many sessions
#: at once: the line at once, then one a minute with how many it stands for.
_unavailable = RepeatedLog(logger, 60.0)

#: Query parameters of the opt-in; ``docs/resume.md`` shows how to keep them out of access logs.
RESUME_PARAM = "ws_resume"
SEQ_PARAM = "ws_seq"
#: Where an application that authorizes rooms beyond ``rooms.authorize`` (PubSubApp's
#: ``authorize``) puts its check for a connection: ``scope["asgi_ws"][ROOM_CHECK]``, an async
#: ``check(scope, room)`` raising :class:`~asgi_ws.exceptions.PermissionDenied`. A resume
#: restores only the rooms it allows, asked with the new connection's scope (whose user may
#: have lost a role since the session joined the room).
ROOM_CHECK = "room_check"
#: A count of data frames: ASCII digits only (no sign, space or other script), at most 15
#: (exact in a double, which Redis scripts use).
_SEQ = re.compile(r"[0-9]{1,15}")


class SessionHandshake:
    """Per connection: opens the session when the app accepts, ends it when the socket goes."""

    __slots__ = ("client_closed", "conn", "mw", "request", "seq_param", "session")

    def __init__(self, mw: ResumeMiddleware, conn: Connection, request: str, seq_param: str | None) -> None:
        self.mw = mw
        self.conn = conn
        self.request = request
        self.seq_param = seq_param
        self.session: Session | None = None
        self.client_closed = False

    def receive(self, receive: Receive) -> Receive:
        async def receive_noting_the_close() -> Message:
            message = await receive()
            if message["type"] == "websocket.disconnect" and message.get("code") == CloseCode.NORMAL_CLOSURE:
                self.client_closed = self.conn.close_code is None
            return message

        return receive_noting_the_close

    def send(self, send: Send) -> Send:
        def send_through_the_session(message: Message) -> Any:
            session = self.session
            if (
                session is not None
                and message["type"] == "websocket.send"
                and not self.conn.closing
                and not self.conn.ended
            ):
                return session.send(message)
            if message["type"] == "websocket.accept" and session is None:
                return self._accept(send, message)
            return send(message)

        return send_through_the_session

    async def _accept(self, send: Send, message: Message) -> None:
        await send(message)
        conn = self.conn
        limits = conn.outbound.limits
        if limits is None:
            conn.outbound.configure(self.mw.queue_limits)
        elif limits.policy != "block":
            conn.outbound.limits = self.mw.blocking(limits)
        try:
            session = await self._open()
        except _StoreUnavailable as exc:  # the client was told: resume_failed / store_unavailable
            _unavailable.warning(
                "could not open a resumable session (%s): continuing without resumption", exc, key="open"
            )
            return
        except Exception:  # a bug: the connection goes on without resumption
            logger.exception("could not open a resumable session: continuing without resumption")
            return
        self.session = session
        _install(conn, session)
        self.mw.live[session.id] = session
        conn.on_end(lambda: _finish_later(self, session))
        interval = self.mw.limits.window / 3
        _schedule_renewal(conn, session, interval)

    async def _open(self) -> Session:
        mw, conn = self.mw, self.conn
        identity = user_identity(conn.scope)
        identity = str(identity) if identity is not None else None
        owner = uuid.uuid4().hex
        if self.request != "new":
            try:
                session = await self._resume(identity, owner)
            except ResumeRefused as refused:
                mw.stats["refused"] += 1
                mw.refused_by_code[refused.code] = mw.refused_by_code.get(refused.code, 0) + 1
                logger.info("resume refused (%s): %s", refused.code, refused.reason)
                conn.control.send("resume_failed", {"code": refused.code, "reason": refused.reason})
            else:
                mw.stats["resumed"] += 1
                return session
        session_id = uuid.uuid4().hex
        try:
            await mw.store.create(session_id, owner, identity, mw.limits.window)
        except Exception as exc:
            conn.control.send(
                "resume_failed", {"code": "store_unavailable", "reason": "the session store is unavailable"}
            )
            raise _StoreUnavailable(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from exc
        mw.stats["created"] += 1
        session = Session(conn, mw.flusher, mw.signer, mw.limits, session_id, owner, identity)
        session.announce()
        return session

    async def _resume(self, identity: str | None, owner: str) -> Session:
        mw, conn = self.mw, self.conn
        session_id, token_identity, generation = mw.signer.verify(self.request)
        if self.seq_param is None or not _SEQ.fullmatch(self.seq_param):
            raise ResumeRefused("bad_request", f"{SEQ_PARAM} must be the count of data frames received (ASCII digits)")
        client_seq = int(self.seq_param)
        if token_identity != identity:
            raise ResumeRefused("identity_mismatch", "this connection is not authenticated as the session's user")
        try:  # look, change nothing: a refusal must leave the socket holding the session alone
            state = await mw.store.inspect(session_id, client_seq)
        except Exception as exc:
            raise _store_unavailable(exc) from exc
        _refuse(check_takeover(state, generation, client_seq), client_seq, state)
        assert state is not None
        session = Session(conn, mw.flusher, mw.signer, mw.limits, session_id, owner, identity, resumed=True)
        session.rooms = dict(state.rooms)
        session.cursors = dict(state.cursors)
        session.pause()  # nothing is written before the takeover
        session.hold()  # what is numbered from now on waits behind the replay
        _install(conn, session)  # Rooms hands room messages to the session
        try:
            await self._rejoin(session, state.rooms)
            catchup = await catch_up(state, client_seq, mw.rooms)  # may refuse: nothing changed yet
            try:  # the one step that changes anything: checks again, then takes the session over
                taken = await mw.store.take_over(session_id, owner, generation, client_seq, mw.limits.window)
            except Exception as exc:
                raise _store_unavailable(exc) from exc
            _refuse(taken.refused, client_seq, state)  # a race lost since the inspection
        except BaseException:
            await self._undo(session)
            raise
        # Taken over: the session is this connection's.
        final = taken.state
        assert final is not None
        old = mw.live.get(session_id)
        if old is not None and old.conn is not conn:
            old.detached = True
            old.conn.close(CloseCode.SESSION_REPLACED, "session resumed on another connection")
        session.generation = final.generation
        if _moved(state, final):  # the old socket wrote meanwhile: what is owed is read again
            try:
                await self._follow(session, state.rooms, final.rooms)
                catchup = await catch_up(final, client_seq, mw.rooms)
            except BaseException:  # the session is taken, and cannot be given back whole: start afresh
                await self._undo(session)
                raise
        session.rooms = {room: m for room, m in final.rooms.items() if room in session.rooms}
        session.cursors.update(final.cursors)  # forward only: the final ones
        session.continue_from(client_seq + len(catchup.replay), client_seq, catchup.open_run)
        session.unpause()
        self._fill(session, catchup)
        replay = session.seq - client_seq
        session.announce("resumed", replay=replay, rooms=sorted(session.rooms), room_gap=catchup.gap)
        await session.replay(catchup.replay)
        mw.stats["replayed"] += replay
        return session

    async def _rejoin(self, session: Session, rooms: dict[str, Membership]) -> None:
        """Before the takeover: rejoin the session's rooms with their format, presence meta and
        presence watch, live room messages kept aside unnumbered (numbered after the replay)."""
        if self.mw.rooms is None:  # nothing to rejoin them with: the session starts in no room
            session.rooms.clear()
            return
        session.hold_live()
        for room, membership in list(rooms.items()):
            await self._join(session, room, membership)

    async def _follow(self, session: Session, inspected: dict[str, Membership], final: dict[str, Membership]) -> None:
        """After the takeover: follow the rooms the old socket joined or left since the session
        was inspected."""
        rooms = self.mw.rooms
        if rooms is None:
            return
        for room in [r for r in inspected if r not in final]:
            await rooms.leave(room, self.conn)
        for room, membership in final.items():
            if room not in inspected:
                await self._join(session, room, membership)

    def _fill(self, session: Session, catchup: Catchup) -> None:
        """Number each room's missed messages after the replay (new runs), then the live ones
        kept aside that neither covered."""
        try:
            for room, missed in catchup.fills.items():
                if room in session.rooms:
                    session.fill(room, missed)
        finally:
            session.release_live(catchup.reached)

    async def _join(self, session: Session, room: str, membership: Membership) -> None:
        rooms, scope = self.mw.rooms, self.conn.scope
        assert rooms is not None
        check = namespace(scope).get(ROOM_CHECK)
        try:
            if check is not None:
                await check(scope, room)
            await rooms.join(room, self.conn, format=membership.format, meta=membership.meta, watch=membership.watch)
        except Exception as exc:  # a room the user may no longer enter, or a broker outage
            session.rooms.pop(room, None)
            logger.info("session %s: not rejoining room %r: %s", session.id, room, exc)

    async def _undo(self, session: Session) -> None:
        """The resume failed: the fresh session that follows starts in no room."""
        session.drop_live()
        session.detached = True
        if self.mw.rooms is not None:
            await self.mw.rooms.leave_all(self.conn)
        _uninstall(self.conn)


def _refuse(code: str | None, client_seq: int, state: SessionState | None) -> None:
    """Raise the refusal ``code`` of :func:`~asgi_ws.resume.stores.base.check_takeover`, if any."""
    if code is None:
        return
    head, first = (state.head, state.first) if state is not None else (0, 1)
    reasons = {
        "unknown_session": "the session expired or is unknown to this server",
        "token_used": "the resume token was already used: the session was resumed since it was issued",
        "seq_ahead": f"{SEQ_PARAM}={client_seq} but the session sent {head} messages",
        "gap_too_old": f"messages after {client_seq} were trimmed (oldest kept: {first})",
    }
    raise ResumeRefused(code, reasons.get(code, code))


def _store_unavailable(exc: BaseException) -> ResumeRefused:
    return ResumeRefused("store_unavailable", f"the session store is unavailable: {type(exc).__name__}")


class _StoreUnavailable(Exception):
    """A new session could not be created (its client was sent ``resume_failed``)."""


def _moved(inspected: SessionState, final: SessionState) -> bool:
    """Did the old socket change the session between the inspection and the takeover?"""
    return (inspected.head, inspected.open, inspected.entries, inspected.rooms, inspected.cursors) != (
        final.head,
        final.open,
        final.entries,
        final.rooms,
        final.cursors,
    )


def _install(conn: Connection, session: Session) -> None:
    """The session becomes the connection's delivery sink (and ``scope["asgi_ws"]["session"]``)."""
    conn.extras["session"] = session
    conn.sink = session
    namespace(conn.scope)["session"] = session


def _uninstall(conn: Connection) -> None:
    conn.extras.pop("session", None)
    conn.sink = None
    namespace(conn.scope).pop("session", None)


def ack(conn: Connection, message: dict[str, Any]) -> None:
    """The ``ack`` control message: the client has every frame up to ``seq``."""
    seq = field(message, "seq", int)
    session = session_of(conn)
    if session is not None and 0 <= seq <= session.offered:
        session.ack(seq)


def _schedule_renewal(conn: Connection, session: Session, interval: float) -> None:
    def renew() -> None:
        if conn.ended or session.detached:
            return
        spawn(session.renew())
        conn.call_later(interval, renew)

    conn.call_later(interval, renew)


async def _finish(handshake: SessionHandshake, session: Session) -> None:
    await session.finish(ended_by_client=handshake.client_closed)
    if handshake.mw.live.get(session.id) is session:
        del handshake.mw.live[session.id]


def _finish_later(handshake: SessionHandshake, session: Session) -> None:
    # Runs after the receive wrapper has seen the client's close code, which follows this hook.
    spawn(_finish(handshake, session))


__all__ = ["RESUME_PARAM", "ROOM_CHECK", "SEQ_PARAM", "SessionHandshake", "ack"]
