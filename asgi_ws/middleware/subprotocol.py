"""SubprotocolMiddleware: negotiate ``Sec-WebSocket-Protocol`` once, for every endpoint behind it.

The choice is made from the scope before the app runs, so the app can read it before
accepting (``scope["asgi_ws"]["subprotocol"]``), and it is written into the app's
``websocket.accept`` unless the app chose a subprotocol itself.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal

from .._scope import CREDENTIAL_SUBPROTOCOL_PREFIXES, log_safe, namespace
from ..deny import deny, deny_with
from ..exceptions import ConfigurationError, SubprotocolRejected
from ..types import ASGIApp, Message, Receive, Scope, Send

Selector = Callable[[Scope, Sequence[str]], "Awaitable[str | None] | str | None"]

_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def select_subprotocol(
    offered: Sequence[str], supported: Sequence[str], *, prefer: Literal["server", "client"] = "server"
) -> str | None:
    """Pick the subprotocol to speak, or None when the two lists share none.

    With ``prefer="server"`` (the default, as in the ``websockets`` library) the first entry
    of ``supported`` that the client offered wins: the server decides which version it
    would rather speak. With ``prefer="client"`` the first offered entry that the server
    supports wins, honouring the order the client listed.
    """
    if prefer == "server":
        offered_set = set(offered)
        return next((p for p in supported if p in offered_set), None)
    supported_set = set(supported)
    return next((p for p in offered if p in supported_set), None)


def describe_offer(offered: Sequence[str], shown: int = 8) -> str:
    """What a client offered, for a refusal's log line: each entry escaped and cut, the first
    ``shown`` of them, and an entry carrying a credential (a ``SubprotocolToken`` prefix) masked."""
    if not offered:
        return "offered nothing"
    entries = []
    for entry in offered[:shown]:
        prefix = next((p for p in CREDENTIAL_SUBPROTOCOL_PREFIXES if entry.startswith(p)), None)
        entries.append(log_safe(entry, 40) if prefix is None else log_safe(prefix) + "[redacted]")
    more = f" and {len(offered) - shown} more" if len(offered) > shown else ""
    return f"offered {', '.join(entries)}{more}"


class SubprotocolMiddleware:
    """Choose the subprotocol of every WebSocket handshake from a supported list.

    Args:
        app: the ASGI application to wrap.
        supported: subprotocols the server speaks, most preferred first.
        required: refuse (HTTP 400) a client that offers none of ``supported``; when
            False such a client is accepted without a subprotocol.
        prefer: ``"server"`` (default) or ``"client"``: whose order breaks ties, see
            :func:`select_subprotocol`.
        select: optional callable ``(scope, offered) -> str | None`` (sync or async)
            replacing the built-in choice; it may raise ``SubprotocolRejected``. A
            returned value must be one of the offered subprotocols.

    Raises:
        ConfigurationError: ``supported`` is empty, a string, or holds an invalid token.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        supported: Sequence[str],
        required: bool = True,
        prefer: Literal["server", "client"] = "server",
        select: Selector | None = None,
    ) -> None:
        if isinstance(supported, str) or not supported:
            raise ConfigurationError("supported must be a non-empty list of subprotocol names, e.g. ['chat.v2']")
        for name in supported:
            if not name or not set(name) <= _TOKEN_CHARS:
                raise ConfigurationError(f"supported entry {name!r} is not a valid subprotocol token (RFC 6455)")
        if prefer not in ("server", "client"):
            raise ConfigurationError("prefer must be 'server' or 'client'")
        self.app = app
        self.supported = tuple(supported)
        self.required = required
        self.prefer = prefer
        self.select = select

    async def _choose(self, scope: Scope, offered: list[str]) -> str | None:
        if self.select is None:
            return select_subprotocol(offered, self.supported, prefer=self.prefer)
        result = self.select(scope, offered)
        if inspect.isawaitable(result):
            result = await result
        if result is not None and result not in offered:
            raise SubprotocolRejected(f"selected subprotocol {result!r} was not offered")
        return result

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        offered = list(scope.get("subprotocols") or ())
        try:
            chosen = await self._choose(scope, offered)
        except SubprotocolRejected as exc:
            detail = exc.detail or describe_offer(offered)
            await deny_with(scope, send, exc, refused_by="SubprotocolMiddleware", detail=detail)
            return
        if chosen is None and self.required:
            reason = (
                "no subprotocol offered; this endpoint requires one of: "
                if not offered
                else "none of the offered subprotocols is supported; supported: "
            ) + ", ".join(self.supported)
            await deny(scope, send, 400, reason, refused_by="SubprotocolMiddleware", detail=describe_offer(offered))
            return
        ns = namespace(scope)
        ns["subprotocol"] = chosen
        if chosen is None:
            await self.app(scope, receive, send)
            return

        async def send_with_subprotocol(message: Message) -> None:
            if message["type"] == "websocket.accept" and message.get("subprotocol") is None:
                message = {**message, "subprotocol": chosen}
            await send(message)

        await self.app(scope, receive, send_with_subprotocol)


__all__ = ["SubprotocolMiddleware", "describe_offer", "select_subprotocol"]
