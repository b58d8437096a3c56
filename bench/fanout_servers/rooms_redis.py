"""asgi_ws Rooms on Redis; the URL (with a unique ``?prefix=``) comes from ``FANOUT_REDIS_URL``.

Run it in several uvicorn processes (one port each): members split over them, the trigger
publishes in one and Redis carries the message to the others.
"""

import os

from ._rooms import make_app

app = make_app(os.environ.get("FANOUT_REDIS_URL", "redis://127.0.0.1:6379/0?prefix=fanout:"))
