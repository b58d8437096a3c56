"""Drive one ASGI WebSocket handshake in memory and report its outcome."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from asgiref.testing import ApplicationCommunicator


def ws_scope(
    path: str = "/ws",
    *,
    headers: Iterable[tuple[str, str]] = (),
    subprotocols: Iterable[str] = (),
    query: str = "",
    extensions: bool = True,
) -> dict[str, Any]:
    """A WebSocket scope as uvicorn builds it (with the denial extension unless told otherwise)."""
    return {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "scheme": "ws",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
        "subprotocols": list(subprotocols),
        "extensions": {"websocket.http.response": {}} if extensions else {},
        "state": {},
    }


@dataclass
class Outcome:
    kind: str  # "accepted", "denied" (HTTP response) or "closed" (close before accept)
    status: int | None = None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    subprotocol: str | None = None
    code: int | None = None
    reason: str = ""


async def handshake(app: Any, scope: dict[str, Any], timeout: float = 2.0) -> tuple[Outcome, ApplicationCommunicator]:
    """Send ``websocket.connect`` and read how the application answers the handshake."""
    comm = ApplicationCommunicator(app, scope)
    await comm.send_input({"type": "websocket.connect"})
    first = await comm.receive_output(timeout)
    if first["type"] == "websocket.accept":
        return Outcome("accepted", subprotocol=first.get("subprotocol")), comm
    if first["type"] == "websocket.close":
        return Outcome("closed", code=first.get("code"), reason=first.get("reason", "")), comm
    assert first["type"] == "websocket.http.response.start", first
    body = await comm.receive_output(timeout)
    assert body["type"] == "websocket.http.response.body"
    headers = {k.decode(): v.decode() for k, v in first["headers"]}
    return Outcome("denied", status=first["status"], body=body["body"], headers=headers), comm
