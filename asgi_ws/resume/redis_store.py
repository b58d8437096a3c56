"""``RedisSessionStore``: resumable sessions shared by every worker process, in Redis.

Each session is four keys sharing a hash tag (one cluster slot): a hash (owner, identity,
generation, head, first, rooms), the rooms' positions, and two lists: the stored batches (one element
per batch of frames, each frame length-prefixed: one ``RPUSH`` a batch, not one a frame) and
each batch's first seq, the oldest first. Trimming drops whole batches. Every operation that
must be atomic with the ownership check is one Lua script, so a socket resumed on another
process can never append after the takeover, a takeover happens only when its checks pass
(two resumes with one token: one wins, the other changes nothing), a frame is never stored
twice or out of order, and a write tells a session taken over (0) from one the store lost (-1).
Every key expires ``ttl`` seconds after the last write: abandoned sessions cost nothing.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import parse_url

from ..exceptions import ConfigurationError
from .store import Append, Frame, SessionState, SessionStore, Takeover

_CREATE = """
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'identity', ARGV[2], 'gen', 0, 'head', 0, 'first', 1, 'rooms', '{}')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

_EXPIRE_ALL = """
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
"""

# The session's state (the 'gen' of a session created by an older version is missing: 0).
_STATE = """
local state = redis.call('HMGET', KEYS[1], 'identity', 'head', 'first', 'rooms', 'gen')
state[6] = redis.call('HGETALL', KEYS[3])
"""

_INSPECT = (
    """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
"""
    + _STATE
    + "return state\n"
)

# The batches from the one holding seq `after` + 1 on, after the first seq of the first.
_BATCHES_AFTER = """
local function batches_after(after)
  local starts = redis.call('LRANGE', KEYS[4], 0, -1)
  local from = 0
  for i = 1, #starts do
    if tonumber(starts[i]) <= after + 1 then from = i - 1 end
  end
  return {starts[from + 1] or '0', redis.call('LRANGE', KEYS[2], from, -1)}
end
"""

_READ = _BATCHES_AFTER + "return batches_after(tonumber(ARGV[1]))\n"

# ARGV: owner, ttl, generation, after. check_takeover() in store.py, then the takeover, in one
# step: a refusal is a one-element reply and changes nothing.
_TAKE_OVER = (
    _BATCHES_AFTER
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'unknown_session'} end
local gen = tonumber(redis.call('HGET', KEYS[1], 'gen') or '0')
local want, after = tonumber(ARGV[3]), tonumber(ARGV[4])
if gen ~= want then
  if want < gen then return {'token_used'} end
  return {'unknown_session'}
end
if after > tonumber(redis.call('HGET', KEYS[1], 'head')) then return {'seq_ahead'} end
if after < tonumber(redis.call('HGET', KEYS[1], 'first')) - 1 then return {'gap_too_old'} end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'gen', gen + 1)
"""
    + _EXPIRE_ALL
    + _STATE
    + """
state[7] = batches_after(after)
return state
"""
)

# An ownership-checked write: -1 when the session is gone, 0 when another owner holds it.
_OWNED = """
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner then return -1 end
if owner ~= ARGV[1] then return 0 end
"""

# Shared by append and touch: drop the batches whose frames are all below keep_from
# (ARGV[3]); 'first' becomes the first seq of the oldest batch kept.
_TRIM_AND_EXPIRE = (
    """
local keep = tonumber(ARGV[3])
local last = tonumber(redis.call('HGET', KEYS[1], 'head'))
while redis.call('LLEN', KEYS[4]) > 0 do
  local next_start = tonumber(redis.call('LINDEX', KEYS[4], 1) or (last + 1))
  if next_start > keep then break end
  redis.call('LPOP', KEYS[2])
  redis.call('LPOP', KEYS[4])
end
redis.call('HSET', KEYS[1], 'first', tonumber(redis.call('LINDEX', KEYS[4], 0) or (last + 1)))
"""
    + _EXPIRE_ALL
)

# ARGV[5] pairs of (room, position) follow, in ARGV[6...]: the rooms' cursors. A cursor only
# moves forward: a touch carrying an older one (sent while an append was in flight) is ignored.
_SET_CURSORS = """
local function later(a, b)
  if not b then return true end
  local a1, a2 = string.match(a, '^(%d+)-(%d+)$')
  local b1, b2 = string.match(b, '^(%d+)-(%d+)$')
  a1, a2, b1, b2 = tonumber(a1), tonumber(a2), tonumber(b1), tonumber(b2)
  return a1 > b1 or (a1 == b1 and a2 > b2)
end
local pairs_end = 5 + 2 * tonumber(ARGV[5])
for i = 6, pairs_end, 2 do
  if later(ARGV[i + 1], redis.call('HGET', KEYS[3], ARGV[i])) then
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  end
end
"""

# After the cursors: the batch's frame count and the batch itself, one list element.
_APPEND = (
    _OWNED
    + """
local head = tonumber(redis.call('HGET', KEYS[1], 'head'))
if head + 1 ~= tonumber(ARGV[4]) then return -1 end
"""
    + _SET_CURSORS
    + """
redis.call('RPUSH', KEYS[2], ARGV[pairs_end + 2])
redis.call('RPUSH', KEYS[4], ARGV[4])
redis.call('HSET', KEYS[1], 'head', head + tonumber(ARGV[pairs_end + 1]))
"""
    + _TRIM_AND_EXPIRE
    + "return 1\n"
)

_TOUCH = (
    _OWNED
    + """
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'rooms', ARGV[4]) end
"""
    + _SET_CURSORS
    + _TRIM_AND_EXPIRE
    + "return 1\n"
)

_DELETE = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4]) end
return 1
"""

_LENGTH = struct.Struct("!I")


def _pack(frames: Sequence[Frame]) -> bytes:
    """One batch as one list element: each frame preceded by its length."""
    pack = _LENGTH.pack
    return b"".join([part for frame in frames for part in (pack(len(frame)), frame)])


def _unpack(batch: bytes) -> list[Frame]:
    frames: list[Frame] = []
    offset, size, unpack_from = 0, len(batch), _LENGTH.unpack_from
    while offset < size:
        (length,) = unpack_from(batch, offset)
        offset += 4
        frames.append(batch[offset : offset + length])
        offset += length
    return frames


class RedisSessionStore(SessionStore):
    """Sessions in Redis: ``redis://host:port/db?prefix=asgi_ws:session:`` (redis-py's URL options apply).

    Args:
        url: the Redis URL; ``prefix`` (in the query) namespaces the keys.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        self.prefix = dict(query).get("prefix", "asgi_ws:session:")
        rest = urlencode([(k, v) for k, v in query if k != "prefix"])
        try:
            # Every session writes through this client: bound its connections and let writers
            # queue for one (redis-py's default pool raises "Too many connections" instead).
            options: dict[str, Any] = {
                "max_connections": 32,
                "timeout": 5.0,
                "health_check_interval": 30,
                **parse_url(urlunsplit(parts._replace(query=rest))),
            }
            self._redis = Redis.from_pool(BlockingConnectionPool(**options))
        except ValueError as exc:
            raise ConfigurationError(f"invalid Redis session store URL: {exc}") from exc
        register = self._redis.register_script
        self._create, self._inspect, self._take_over = register(_CREATE), register(_INSPECT), register(_TAKE_OVER)
        self._append, self._touch = register(_APPEND), register(_TOUCH)
        self._read, self._delete = register(_READ), register(_DELETE)

    def _keys(self, session_id: str) -> list[str]:
        base = f"{self.prefix}{{{session_id}}}"
        return [f"{base}:m", f"{base}:l", f"{base}:c", f"{base}:s"]

    async def create(self, session_id: str, owner: str, identity: str | None, ttl: float) -> None:
        await self._create(keys=self._keys(session_id), args=[owner, identity or "", _ms(ttl)])

    async def inspect(self, session_id: str) -> SessionState | None:
        reply: Any = await self._inspect(keys=self._keys(session_id))
        return _state(reply) if reply else None

    async def take_over(self, session_id: str, owner: str, generation: int, after: int, ttl: float) -> Takeover:
        reply: Any = await self._take_over(keys=self._keys(session_id), args=[owner, _ms(ttl), generation, after])
        if len(reply) == 1:
            return Takeover(refused=reply[0].decode())
        return Takeover(_state(reply), _frames_after(after, *reply[6]))

    async def append(
        self,
        session_id: str,
        owner: str,
        first_seq: int,
        frames: Sequence[Frame],
        keep_from: int,
        ttl: float,
        cursors: dict[str, str] | None = None,
    ) -> bool | None:
        append = (session_id, owner, first_seq, frames, keep_from, ttl, cursors)
        return _written(await self._append(keys=self._keys(session_id), args=_append_args(append)))

    async def append_many(self, appends: Sequence[Append]) -> Sequence[bool | BaseException | None]:
        """Every append in one pipeline (each still one atomic script): one round trip."""
        if len(appends) == 1:
            return [await self.append(*appends[0])]
        pipe = self._redis.pipeline(transaction=False)
        for append in appends:
            await self._append(keys=self._keys(append[0]), args=_append_args(append), client=pipe)
        results = await pipe.execute(raise_on_error=False)
        return [r if isinstance(r, BaseException) else _written(r) for r in results]

    async def read(self, session_id: str, after: int) -> list[Frame]:
        return _frames_after(after, *await self._read(keys=self._keys(session_id), args=[after]))

    async def touch(
        self,
        session_id: str,
        owner: str,
        keep_from: int,
        ttl: float,
        rooms: dict[str, str] | None = None,
        cursors: dict[str, str] | None = None,
    ) -> bool | None:
        encoded = "" if rooms is None else json.dumps(rooms, separators=(",", ":"))
        args: list[Any] = [owner, _ms(ttl), keep_from, encoded, *_pairs(cursors)]
        return _written(await self._touch(keys=self._keys(session_id), args=args))

    async def delete(self, session_id: str, owner: str) -> None:
        await self._delete(keys=self._keys(session_id), args=[owner])

    async def close(self) -> None:
        await self._redis.aclose()


def _state(reply: Any) -> SessionState:
    """The :class:`SessionState` of the scripts' ``state`` reply."""
    identity, head, first, rooms, generation, flat_cursors = reply[:6]
    cursors = {k.decode(): v.decode() for k, v in zip(flat_cursors[::2], flat_cursors[1::2], strict=True)}
    return SessionState(
        identity.decode() or None if identity is not None else None,
        int(head),
        int(first),
        json.loads(rooms) if rooms else {},
        cursors,
        int(generation or 0),
    )


def _frames_after(after: int, first: bytes | int, batches: list[bytes]) -> list[Frame]:
    """The frames after seq ``after`` of the batches from the one holding ``after + 1`` on."""
    frames = [frame for batch in batches for frame in _unpack(batch)]
    return frames[max(0, after + 1 - int(first)) :]


def _written(reply: int) -> bool | None:
    """An ownership-checked write's reply: 1 done, 0 another owner, -1 the session is gone."""
    return None if reply < 0 else bool(reply)


def _append_args(append: Append) -> list[Any]:
    """The ARGV of the append script for one :data:`~asgi_ws.resume.store.Append`."""
    _, owner, first_seq, frames, keep_from, ttl, cursors = append
    return [owner, _ms(ttl), keep_from, first_seq, *_pairs(cursors), len(frames), _pack(frames)]


def _pairs(cursors: dict[str, str] | None) -> list[Any]:
    """The count then the (room, position) pairs, as the scripts take them."""
    flat: list[Any] = [len(cursors or ())]
    for room, position in (cursors or {}).items():
        flat += [room, position]
    return flat


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


__all__ = ["RedisSessionStore"]
