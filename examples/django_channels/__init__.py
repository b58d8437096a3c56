"""A Django Channels chat on asgi_ws: Django login, rooms with presence, resumable sessions.

Run it with ``python -m examples.django_channels`` (uvicorn) or
``python -m examples.django_channels --server daphne``: it migrates its SQLite database,
which creates the demo users ``alice`` and ``bob`` (password ``demo-password``), and serves
http://127.0.0.1:8000/. See ``docs/django.md``.

- ``settings.py``: ``CHANNEL_LAYERS`` on ``asgi_ws.contrib.channels.BrokerChannelLayer``
  (``memory://``, or ``REDIS_URL``), the broker of the rooms and the session store.
- ``asgi.py``: Origin + Auth (the Django session) + Heartbeat + Backpressure + RateLimit +
  Resume around the consumers.
- ``chat/consumers.py``: the chat consumer (``RoomsConsumerMixin``).
- ``chat/templates/chat/room.html``: the page, on the browser client ``/asgi-ws.js``.
"""
