"""ASGI type aliases, loose on purpose so they type-check against Starlette and Channels.

Starlette types ``Scope`` and ``Message`` as ``MutableMapping[str, Any]``; using the same
aliases lets an ``asgi_ws`` middleware wrap a Starlette app (and be wrapped by one) without
casts. The message shapes themselves are documented in ``docs/`` and asgiref's spec.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["ASGIApp", "Message", "Receive", "Scope", "Send"]
