"""asgi_ws Rooms whose members are resumable sessions (ResumeMiddleware): the room on the broker
named by ``FANOUT_BROKER`` (a history broker: ``memory://?history=N``, ``redis://...?history=N``),
the sessions on the store named by ``FANOUT_SESSION_STORE`` (``memory://`` or a Redis URL); see
``_rooms.py``."""

import os

from ._rooms import make_app

app = make_app(
    os.environ.get("FANOUT_BROKER", "memory://?history=10000"),
    session_store=os.environ.get("FANOUT_SESSION_STORE", "memory://"),
)
