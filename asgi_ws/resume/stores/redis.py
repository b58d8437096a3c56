"""``redis://``: resumable sessions shared by every worker process, in Redis.

Each session is four keys sharing a hash tag (one cluster slot): a hash (owner, identity,
generation, head, first, open run, memberships), the rooms' cursors, and two lists: the
entries (one element each: a batch of frames, each frame length-prefixed, so one ``RPUSH`` a
batch; or a run, four zero bytes then ``[room, after, format]`` as JSON; or an end, empty)
and each entry's first seq. Trimming drops whole entries. Every operation that must be atomic
with the ownership check is one Lua script, so a socket resumed on another process can never
write after the takeover, a takeover happens only when its checks pass (two resumes with one
token: one wins, the other changes nothing), an entry is never stored twice or out of order,
and a write tells a session taken over (0) from one the store lost (-1).
Every key expires ``ttl`` seconds after the last write: abandoned sessions cost nothing.

Sessions stored by asgi_ws before room runs existed (no ``v`` = 2 in their hash) are not
resumed (``unknown_session``: the client starts afresh).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import parse_url

from ...delivery import Membership
from ...exceptions import ConfigurationError
from ..frames import Frame
from .base import Entry, Run, SessionState, SessionStore, Takeover, Write, decode_rooms, encode_rooms

_CREATE = """
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'identity', ARGV[2], 'gen', 0, 'head', 0, 'first', 1,
  'open', 0, 'rooms', '{}', 'v', 2)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

_EXPIRE_ALL = """
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[2]) end
"""

# The session's state.
_STATE = """
local state = redis.call('HMGET', KEYS[1], 'identity', 'head', 'first', 'rooms', 'gen', 'open')
state[7] = redis.call('HGETALL', KEYS[3])
"""

# The entries from the one holding seq `after` + 1 on, and their first seqs.
_ENTRIES_AFTER = """
local function entries_after(after)
  local starts = redis.call('LRANGE', KEYS[4], 0, -1)
  local from = 0
  for i = 1, #starts do
    if tonumber(starts[i]) <= after + 1 then from = i - 1 end
  end
  return {redis.call('LRANGE', KEYS[4], from, -1), redis.call('LRANGE', KEYS[2], from, -1)}
end
"""

_INSPECT = (
    _ENTRIES_AFTER
    + """
if redis.call('HGET', KEYS[1], 'v') ~= '2' then return false end
"""
    + _STATE
    + """
if ARGV[1] ~= '' then state[8] = entries_after(tonumber(ARGV[1])) end
return state
"""
)

_READ = _ENTRIES_AFTER + "return entries_after(tonumber(ARGV[1]))\n"

# ARGV: owner, ttl, generation, after. check_takeover() in stores/base.py, then the takeover, in
# one step: a refusal is a one-element reply and changes nothing.
_TAKE_OVER = (
    _ENTRIES_AFTER
    + """
if redis.call('HGET', KEYS[1], 'v') ~= '2' then return {'unknown_session'} end
local gen = tonumber(redis.call('HGET', KEYS[1], 'gen') or '0')
local want, after = tonumber(ARGV[3]), tonumber(ARGV[4])
if gen ~= want then
  if want < gen then return {'token_used'} end
  return {'unknown_session'}
end
if after > tonumber(redis.call('HGET', KEYS[1], 'head')) and tonumber(redis.call('HGET', KEYS[1], 'open')) == 0 then
  return {'seq_ahead'}
end
if after < tonumber(redis.call('HGET', KEYS[1], 'first')) - 1 then return {'gap_too_old'} end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'gen', gen + 1)
"""
    + _EXPIRE_ALL
    + _STATE
    + """
state[8] = entries_after(after)
return state
"""
)

# An ownership-checked write: -1 when the session is gone, 0 when another owner holds it.
_OWNED = """
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner then return -1 end
if owner ~= ARGV[1] then return 0 end
"""

# Shared by write and touch: drop the entries whose seqs are all below keep_from (ARGV[3]):
# those followed by an entry starting at or below it, and a last one of frames below it;
# 'first' becomes the first seq of the oldest entry kept.
_TRIM_AND_EXPIRE = (
    """
local keep = tonumber(ARGV[3])
while redis.call('LLEN', KEYS[4]) > 1 and tonumber(redis.call('LINDEX', KEYS[4], 1)) <= keep do
  redis.call('LPOP', KEYS[2])
  redis.call('LPOP', KEYS[4])
end
local last_head = tonumber(redis.call('HGET', KEYS[1], 'head'))
if redis.call('LLEN', KEYS[4]) == 1 and tonumber(redis.call('HGET', KEYS[1], 'open')) == 0 and last_head < keep then
  redis.call('LPOP', KEYS[2])
  redis.call('LPOP', KEYS[4])
end
redis.call('HSET', KEYS[1], 'first', tonumber(redis.call('LINDEX', KEYS[4], 0) or (last_head + 1)))
"""
    + _EXPIRE_ALL
)

# ARGV[4] pairs of (room, position) follow, in ARGV[5...]: the rooms' cursors. A cursor only
# moves forward: a touch carrying an older one (sent while a write was in flight) is ignored.
_SET_CURSORS = """
local function later(a, b)
  if not b then return true end
  local a1, a2 = string.match(a, '^(%d+)-(%d+)$')
  local b1, b2 = string.match(b, '^(%d+)-(%d+)$')
  a1, a2, b1, b2 = tonumber(a1), tonumber(a2), tonumber(b1), tonumber(b2)
  return a1 > b1 or (a1 == b1 and a2 > b2)
end
local pairs_end = 4 + 2 * tonumber(ARGV[4])
for i = 5, pairs_end, 2 do
  if later(ARGV[i + 1], redis.call('HGET', KEYS[3], ARGV[i])) then
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  end
end
local rooms = ARGV[pairs_end + 1]
if rooms ~= '' then redis.call('HSET', KEYS[1], 'rooms', rooms) end
"""

# After the cursors and the rooms: the number of entries, then (seq, frame count or -1 for a
# run, element) for each. The first must continue the log.
_WRITE = (
    _OWNED
    + _SET_CURSORS
    + """
local n = tonumber(ARGV[pairs_end + 2])
if n > 0 then
  local first = tonumber(ARGV[pairs_end + 3])
  local head = tonumber(redis.call('HGET', KEYS[1], 'head'))
  local open = tonumber(redis.call('HGET', KEYS[1], 'open'))
  if (open > 0 and first < open) or (open == 0 and first ~= head + 1) then return -1 end
  for i = 0, n - 1 do
    local base = pairs_end + 3 + 3 * i
    local seq, count = tonumber(ARGV[base]), tonumber(ARGV[base + 1])
    redis.call('RPUSH', KEYS[2], ARGV[base + 2])
    redis.call('RPUSH', KEYS[4], seq)
    if count < 0 then head, open = seq - 1, seq else head, open = seq + count - 1, 0 end
  end
  redis.call('HSET', KEYS[1], 'head', head, 'open', open)
end
"""
    + _TRIM_AND_EXPIRE
    + "return 1\n"
)

_TOUCH = _OWNED + _SET_CURSORS + _TRIM_AND_EXPIRE + "return 1\n"

_DELETE = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4]) end
return 1
"""

_LENGTH = struct.Struct("!I")
_RUN = b"\x00\x00\x00\x00"  # no frame has length 0 (a frame holds its kind byte at least)


def _pack(item: list[Frame] | Run) -> bytes:
    """One entry as one list element."""
    if isinstance(item, Run):
        return _RUN + json.dumps([item.room, item.after, item.format]).encode()
    pack = _LENGTH.pack
    return b"".join([part for frame in item for part in (pack(len(frame)), frame)])


def _unpack(element: bytes) -> list[Frame] | Run:
    if element[:4] == _RUN:
        room, after, fmt = json.loads(element[4:])
        return Run(room, after, fmt)
    frames: list[Frame] = []
    offset, size, unpack_from = 0, len(element), _LENGTH.unpack_from
    while offset < size:
        (length,) = unpack_from(element, offset)
        offset += 4
        frames.append(element[offset : offset + length])
        offset += length
    return frames


class RedisSessionStore(SessionStore):
    """Sessions in Redis: ``redis://host:port/db?prefix=asgi_ws:session:`` (redis-py's URL options apply).

    Every session writes through one client: its connections are bounded (``max_connections``,
    default 64) and a writer that finds none free waits for one (``timeout``, default 20 s)
    rather than failing: a burst of thousands of handshakes queues, it is not refused.

    Args:
        url: the Redis URL; ``prefix`` (in the query) namespaces the keys.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        self.prefix = dict(query).get("prefix", "asgi_ws:session:")
        rest = urlencode([(k, v) for k, v in query if k != "prefix"])
        try:
            options: dict[str, Any] = {
                "max_connections": 64,
                "timeout": 20.0,
                "health_check_interval": 30,
                **parse_url(urlunsplit(parts._replace(query=rest))),
            }
            self._redis = Redis.from_pool(BlockingConnectionPool(**options))
        except ValueError as exc:
            raise ConfigurationError(f"invalid Redis session store URL: {exc}") from exc
        register = self._redis.register_script
        self._create, self._inspect, self._take_over = register(_CREATE), register(_INSPECT), register(_TAKE_OVER)
        self._write, self._touch = register(_WRITE), register(_TOUCH)
        self._read, self._delete = register(_READ), register(_DELETE)

    def _keys(self, session_id: str) -> list[str]:
        base = f"{self.prefix}{{{session_id}}}"
        return [f"{base}:m", f"{base}:l", f"{base}:c", f"{base}:s"]

    async def create(self, session_id: str, owner: str, identity: str | None, ttl: float) -> None:
        await self._create(keys=self._keys(session_id), args=[owner, identity or "", _ms(ttl)])

    async def inspect(self, session_id: str, after: int | None = None) -> SessionState | None:
        reply: Any = await self._inspect(keys=self._keys(session_id), args=["" if after is None else after])
        return _state(reply) if reply else None

    async def take_over(self, session_id: str, owner: str, generation: int, after: int, ttl: float) -> Takeover:
        reply: Any = await self._take_over(keys=self._keys(session_id), args=[owner, _ms(ttl), generation, after])
        if len(reply) == 1:
            return Takeover(refused=reply[0].decode())
        return Takeover(_state(reply))

    async def write(self, write: Write) -> bool | None:
        return _written(await self._write(keys=self._keys(write.session_id), args=_write_args(write)))

    async def write_many(self, writes: Sequence[Write]) -> Sequence[bool | BaseException | None]:
        """Every write in one pipeline (each still one atomic script): one round trip."""
        if len(writes) == 1:
            return [await self.write(writes[0])]
        pipe = self._redis.pipeline(transaction=False)
        for write in writes:
            await self._write(keys=self._keys(write.session_id), args=_write_args(write), client=pipe)
        results = await pipe.execute(raise_on_error=False)
        return [r if isinstance(r, BaseException) else _written(r) for r in results]

    async def read(self, session_id: str, after: int) -> list[Entry]:
        return _entries(await self._read(keys=self._keys(session_id), args=[after]))

    async def touch(
        self,
        session_id: str,
        owner: str,
        keep_from: int,
        ttl: float,
        rooms: dict[str, Membership] | None = None,
        cursors: dict[str, str] | None = None,
    ) -> bool | None:
        encoded = "" if rooms is None else encode_rooms(rooms)
        args: list[Any] = [owner, _ms(ttl), keep_from, *_pairs(cursors), encoded]
        return _written(await self._touch(keys=self._keys(session_id), args=args))

    async def delete(self, session_id: str, owner: str) -> None:
        await self._delete(keys=self._keys(session_id), args=[owner])

    async def close(self) -> None:
        await self._redis.aclose()


def _state(reply: Any) -> SessionState:
    """The :class:`SessionState` of the scripts' ``state`` reply."""
    identity, head, first, rooms, generation, open_run, flat_cursors = reply[:7]
    cursors = {k.decode(): v.decode() for k, v in zip(flat_cursors[::2], flat_cursors[1::2], strict=True)}
    return SessionState(
        identity.decode() or None if identity is not None else None,
        int(head),
        int(first),
        decode_rooms(rooms),
        cursors,
        int(generation or 0),
        int(open_run or 0),
        _entries(reply[7]) if len(reply) > 7 else [],
    )


def _entries(reply: Any) -> list[Entry]:
    starts, elements = reply
    return [(int(start), _unpack(element)) for start, element in zip(starts, elements, strict=True)]


def _written(reply: int) -> bool | None:
    """An ownership-checked write's reply: 1 done, 0 another owner, -1 the session is gone."""
    return None if reply < 0 else bool(reply)


def _write_args(write: Write) -> list[Any]:
    """The ARGV of the write script."""
    args: list[Any] = [write.owner, _ms(write.ttl), write.keep_from, *_pairs(write.cursors)]
    args += ["" if write.rooms is None else encode_rooms(write.rooms), len(write.entries)]
    for seq, item in write.entries:
        args += [seq, -1 if isinstance(item, Run) else len(item), _pack(item)]
    return args


def _pairs(cursors: dict[str, str] | None) -> list[Any]:
    """The count then the (room, position) pairs, as the scripts take them."""
    flat: list[Any] = [len(cursors or ())]
    for room, position in (cursors or {}).items():
        flat += [room, position]
    return flat


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


__all__ = ["RedisSessionStore"]
