"""How :class:`~asgi_ws.brokers.postgres.PostgresBroker` lays its messages out in NOTIFY
(pure functions, no I/O).

- **Channel names.** A channel becomes ``prefix`` plus 32 hex digits of the SHA-256 of its
  UTF-8 name (:func:`channel_ident`): lowercase, fixed length, under the 63-byte identifier
  limit. The real name travels in the payload and is checked on receipt, so distinct names
  never mix, even on a collision.
- **Payloads.** A notification carries text of at most 7,999 bytes (with the default 8 kB
  block size). A message that fits goes inline (:func:`encode_inline`): ``t<n>:<name><body>``
  when name and body are NUL-free UTF-8, else ``b<base64 name>:<base64 body>``. A larger one
  is kept in a table and the notification carries ``r<id>``, the row to fetch.
- **History.** A kept message's notification is ``p<epoch>-<n> `` (its position) and then the
  message inline, or ``h<base64 name>`` when it is too large (:func:`encode_kept`): listeners
  read that one from the history table by position.
"""

from __future__ import annotations

import base64
import hashlib

#: Bytes of a notification taken by ``"p<epoch>-<n> "`` in front of a kept message.
POSITION_ROOM = 48

#: A decoded notification: ``(channel, payload)`` inline, the row id of a large message, or
#: ``(channel, payload, position)`` of a kept one (the payload None: read it from the history).
Notification = tuple[str, bytes] | tuple[str, bytes | None, str] | int


def channel_ident(prefix: str, channel: str) -> str:
    """The PostgreSQL channel that ``channel`` maps to: ``prefix`` + 128 bits of SHA-256."""
    return prefix + hashlib.sha256(channel.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _text(data: bytes, utf8: bool) -> str | None:
    # Text a notification can carry: no NUL, and valid in the server encoding (ASCII always is).
    if b"\x00" in data or not (utf8 or data.isascii()):
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def encode_inline(channel: str, payload: bytes, limit: int, utf8: bool = True) -> str | None:
    """The notification text carrying ``payload`` for ``channel``, or None if over ``limit`` bytes."""
    name = channel.encode("utf-8", "surrogatepass")
    if len(name) + len(payload) + 2 > limit:
        return None
    name_text, body_text = _text(name, utf8), _text(payload, utf8)
    if name_text is not None and body_text is not None:
        head = f"t{len(name_text)}:"
        return head + name_text + body_text if len(head) + len(name) + len(payload) <= limit else None
    if 2 + 4 * (-(-len(name) // 3) + -(-len(payload) // 3)) > limit:
        return None
    return f"b{base64.b64encode(name).decode()}:{base64.b64encode(payload).decode()}"


def encode_kept(channel: str, payload: bytes, limit: int, utf8: bool = True) -> str:
    """What follows the position in the notification of a kept message: the message inline if
    it fits in ``limit`` bytes with its position, else ``h<base64 name>`` (read it from the table)."""
    inline = encode_inline(channel, payload, limit - POSITION_ROOM, utf8)
    if inline is None:
        return "h" + base64.b64encode(channel.encode("utf-8", "surrogatepass")).decode()
    return inline


def decode_notification(text: str) -> Notification:
    """``(channel, payload)`` of an inline notification, or the row id of a reference; with
    history, ``(channel, payload, position)``, the payload None when it is to be read from the
    history table.

    Raises:
        ValueError: ``text`` is not in this broker's format.
    """
    if text[:1] == "p":  # history: "p<epoch>-<n> " then the message, or "h<base64 channel>"
        at, _, rest = text[1:].partition(" ")
        epoch, _, number = at.partition("-")
        if not (epoch.isdigit() and number.isdigit()):
            raise ValueError("bad position")
        if rest[:1] == "h":
            return base64.b64decode(rest[1:], validate=True).decode("utf-8", "surrogatepass"), None, at
        inline = decode_notification(rest)
        if not isinstance(inline, tuple):
            raise ValueError("a reference where a message was expected")
        return inline[0], inline[1], at
    kind, rest = text[:1], text[1:]
    if kind == "t":
        length, _, rest = rest.partition(":")
        if not length.isdigit() or int(length) > len(rest):
            raise ValueError("bad text notification")
        return rest[: int(length)], rest[int(length) :].encode()
    if kind == "b":
        name, sep, body = rest.partition(":")
        if not sep:
            raise ValueError("bad base64 notification")
        decode = base64.b64decode
        return decode(name, validate=True).decode("utf-8", "surrogatepass"), decode(body, validate=True)
    if kind == "r" and rest.isdigit():
        return int(rest)
    raise ValueError("not an asgi_ws notification")


__all__ = ["POSITION_ROOM", "Notification", "channel_ident", "decode_notification", "encode_inline", "encode_kept"]
