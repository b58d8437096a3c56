"""asgi_ws Rooms on ``memory://`` whose members are resumable sessions (ResumeMiddleware), on the
session store named by ``FANOUT_SESSION_STORE`` (``memory://`` or a Redis URL); see ``_rooms.py``."""

import os

from ._rooms import make_app

app = make_app("memory://", session_store=os.environ.get("FANOUT_SESSION_STORE", "memory://"))
