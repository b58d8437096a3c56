"""Files shipped in the package: the browser client ``asgi-ws.js`` and the demo page ``demo.html``.

:class:`BrowserClientApp` serves the browser client from any ASGI application, so the page
loads the very version of the script that matches the server it talks to::

    from starlette.routing import Route
    from asgi_ws.static import BrowserClientApp

    app = Starlette(routes=[Route("/asgi-ws.js", BrowserClientApp()), ...])  # or FastAPI(routes=[...])
"""

from __future__ import annotations

import hashlib
from importlib import resources

from ..deny import deny
from ..types import Receive, Scope, Send

#: The browser client's file name in this package.
BROWSER_CLIENT = "asgi-ws.js"
JAVASCRIPT = b"text/javascript; charset=utf-8"


def read(name: str) -> bytes:
    """The bytes of the packaged file ``name`` (``"asgi-ws.js"``, ``"demo.html"``)."""
    return (resources.files(__name__) / name).read_bytes()


class BrowserClientApp:
    """A plain ASGI application serving ``asgi-ws.js``, the browser client, at whatever path it is routed to.

    ``GET`` and ``HEAD`` get the script (``text/javascript``) with an ``ETag``, and a
    ``304 Not Modified`` when the browser already has this version; other methods get 405, a
    WebSocket handshake 404. It imports no framework: route it as an ASGI endpoint
    (``Route("/asgi-ws.js", BrowserClientApp())`` in Starlette and FastAPI) or call it from
    your own ASGI code.

    Args:
        cache_control: the ``Cache-Control`` header; the default makes browsers revalidate
            (a cheap 304) so an upgraded server never talks to a stale client.
    """

    def __init__(self, *, cache_control: str = "no-cache") -> None:
        self.body = read(BROWSER_CLIENT)
        self.etag = f'"{hashlib.sha256(self.body).hexdigest()[:32]}"'.encode()
        self._headers = [
            (b"content-type", JAVASCRIPT),
            (b"cache-control", cache_control.encode("latin-1")),
            (b"etag", self.etag),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, send)
        elif kind == "websocket":
            await deny(scope, send, 404, "this path serves the browser client over HTTP", refused_by="BrowserClientApp")
        elif kind == "lifespan":  # only when it is the top-level application: nothing to start
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})

    async def _http(self, scope: Scope, send: Send) -> None:
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await _answer(send, 405, [(b"allow", b"GET, HEAD"), (b"content-type", b"text/plain")], b"GET or HEAD")
            return
        if any(name == b"if-none-match" and self.etag in value for name, value in scope["headers"]):
            await _answer(send, 304, self._headers[1:], b"")
            return
        headers = [*self._headers, (b"content-length", str(len(self.body)).encode())]
        await _answer(send, 200, headers, b"" if method == "HEAD" else self.body)


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


__all__ = ["BROWSER_CLIENT", "BrowserClientApp", "read"]
