"""asgi_ws Rooms on ``memory://`` (one process); see ``_rooms.py``."""

from ._rooms import make_app

app = make_app("memory://")
