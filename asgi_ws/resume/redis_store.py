"""``RedisSessionStore``: resumable sessions shared by every worker process, in Redis.

Each session is two keys sharing a hash tag (one cluster slot): a hash (owner, identity,
head, first, rooms) and a list of frames, the oldest retained first. Every operation that
must be atomic with the ownership check is one Lua script, so a socket resumed on another
process can never append after the claim, and a frame is never stored twice or out of order.
Both keys expire ``ttl`` seconds after the last write: abandoned sessions cost nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import parse_url

from ..exceptions import ConfigurationError
from .store import Frame, SessionState, SessionStore

_CREATE = """
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'identity', ARGV[2], 'head', 0, 'first', 1, 'rooms', '{}')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'identity', 'head', 'first', 'rooms')
state[5] = redis.call('HGETALL', KEYS[3])
return state
"""

# Shared by append and touch: drop frames below keep_from (ARGV[3]), then extend the expiry.
_TRIM_AND_EXPIRE = """
local first = tonumber(redis.call('HGET', KEYS[1], 'first'))
local keep = tonumber(ARGV[3])
local head = tonumber(redis.call('HGET', KEYS[1], 'head'))
if keep > head + 1 then keep = head + 1 end
if keep > first then
  redis.call('LTRIM', KEYS[2], keep - first, -1)
  redis.call('HSET', KEYS[1], 'first', keep)
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
"""

# ARGV[5] pairs of (room, position) follow, in ARGV[6...]: the rooms' cursors.
_SET_CURSORS = """
local pairs_end = 5 + 2 * tonumber(ARGV[5])
for i = 6, pairs_end, 2 do redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1]) end
"""

_APPEND = (
    """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
local head = tonumber(redis.call('HGET', KEYS[1], 'head'))
if head + 1 ~= tonumber(ARGV[4]) then return 0 end
"""
    + _SET_CURSORS
    + """
redis.call('RPUSH', KEYS[2], unpack(ARGV, pairs_end + 1))
redis.call('HSET', KEYS[1], 'head', head + #ARGV - pairs_end)
"""
    + _TRIM_AND_EXPIRE
    + "return 1\n"
)

_TOUCH = (
    """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'rooms', ARGV[4]) end
"""
    + _SET_CURSORS
    + _TRIM_AND_EXPIRE
    + "return 1\n"
)

_READ = """
local first = tonumber(redis.call('HGET', KEYS[1], 'first'))
if not first then return {} end
local start = tonumber(ARGV[1]) + 1 - first
if start < 0 then start = 0 end
return redis.call('LRANGE', KEYS[2], start, -1)
"""

_DELETE = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then redis.call('DEL', KEYS[1], KEYS[2], KEYS[3]) end
return 1
"""


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
        self._create, self._claim, self._append = register(_CREATE), register(_CLAIM), register(_APPEND)
        self._touch, self._read, self._delete = register(_TOUCH), register(_READ), register(_DELETE)

    def _keys(self, session_id: str) -> list[str]:
        base = f"{self.prefix}{{{session_id}}}"
        return [f"{base}:m", f"{base}:l", f"{base}:c"]

    async def create(self, session_id: str, owner: str, identity: str | None, ttl: float) -> None:
        await self._create(keys=self._keys(session_id), args=[owner, identity or "", _ms(ttl)])

    async def claim(self, session_id: str, owner: str, ttl: float) -> SessionState | None:
        reply: Any = await self._claim(keys=self._keys(session_id), args=[owner, _ms(ttl)])
        if not reply:
            return None
        identity, head, first, rooms, flat_cursors = reply
        cursors = {k.decode(): v.decode() for k, v in zip(flat_cursors[::2], flat_cursors[1::2], strict=True)}
        return SessionState(
            identity.decode() or None if identity is not None else None,
            int(head),
            int(first),
            json.loads(rooms) if rooms else {},
            cursors,
        )

    async def append(
        self,
        session_id: str,
        owner: str,
        first_seq: int,
        frames: Sequence[Frame],
        keep_from: int,
        ttl: float,
        cursors: dict[str, str] | None = None,
    ) -> bool:
        args: list[Any] = [owner, _ms(ttl), keep_from, first_seq, *_pairs(cursors), *frames]
        return bool(await self._append(keys=self._keys(session_id), args=args))

    async def read(self, session_id: str, after: int) -> list[Frame]:
        return list(await self._read(keys=self._keys(session_id), args=[after]))

    async def touch(
        self,
        session_id: str,
        owner: str,
        keep_from: int,
        ttl: float,
        rooms: dict[str, str] | None = None,
        cursors: dict[str, str] | None = None,
    ) -> bool:
        encoded = "" if rooms is None else json.dumps(rooms, separators=(",", ":"))
        args: list[Any] = [owner, _ms(ttl), keep_from, encoded, *_pairs(cursors)]
        return bool(await self._touch(keys=self._keys(session_id), args=args))

    async def delete(self, session_id: str, owner: str) -> None:
        await self._delete(keys=self._keys(session_id), args=[owner])

    async def close(self) -> None:
        await self._redis.aclose()


def _pairs(cursors: dict[str, str] | None) -> list[Any]:
    """The count then the (room, position) pairs, as the scripts take them."""
    flat: list[Any] = [len(cursors or ())]
    for room, position in (cursors or {}).items():
        flat += [room, position]
    return flat


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


__all__ = ["RedisSessionStore"]
