"""An app for browser tests: the page, the served browser client, and the app's WebSockets."""

from __future__ import annotations

from asgi_ws.static import BrowserClientApp
from asgi_ws.types import ASGIApp, Receive, Scope, Send


def with_browser_client(app: ASGIApp) -> ASGIApp:
    """``app``'s WebSockets, the served client at /asgi-ws.js, and an empty page anywhere else."""
    client = BrowserClientApp()

    async def dispatch(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/asgi-ws.js":
            await client(scope, receive, send)
        elif scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
            await send({"type": "http.response.body", "body": b"<!doctype html>"})
        else:
            await app(scope, receive, send)

    return dispatch
