"""Server-Sent Events fed by a room, for clients that cannot open a WebSocket, resuming with
``Last-Event-ID``. ``python -m examples.sse_app``; see docs/sse.md."""
