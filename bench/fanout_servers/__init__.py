"""Servers of ``bench/fanout.py``: one ASGI app per system, importable as ``bench.fanout_servers.<name>:app``.

Every server exposes the same three things, so the benchmark drives them alike:

- members: WebSocket connections (Socket.IO clients for ``socketio_room``) that join the one
  group ``bench`` and wait;
- ``GET /count``: how many members this process holds (the benchmark waits for all of them);
- ``GET /trigger?tag=r0001``: broadcast one ~100-byte text message carrying ``#r0001#`` to the
  group; the response body is ``<local members> <seconds the broadcast call took>``
  (``&count=N``: N broadcasts back to back, for the bare loop and Rooms).
"""
