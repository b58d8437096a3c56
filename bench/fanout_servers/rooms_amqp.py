"""asgi_ws Rooms on RabbitMQ; the URL (with a unique ``?exchange=``) comes from ``FANOUT_AMQP_URL``.

Run it in several uvicorn processes (one port each): members split over them, the trigger
publishes in one and RabbitMQ carries the message to the others' queues.
"""

import os

from ._rooms import make_app

app = make_app(os.environ.get("FANOUT_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/?exchange=fanout"))
