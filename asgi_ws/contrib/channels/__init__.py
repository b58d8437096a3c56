"""Django Channels on asgi_ws (``pip install 'asgi-ws[django]'``).

- :class:`BrokerChannelLayer`: a Channels channel layer on asgi_ws's brokers (``memory://``,
  ``redis://``, ``postgres://``, ``nats://``) where ``group_send`` is one broker publish per
  group, whatever its size (docs/channels-layer.md)::

      CHANNEL_LAYERS = {"default": {
          "BACKEND": "asgi_ws.contrib.channels.BrokerChannelLayer",
          "CONFIG": {"url": "redis://127.0.0.1:6379/0"},
      }}

- Identity (docs/django.md): :class:`DjangoSessionBackend`, an ``AuthMiddleware`` backend
  putting the session's Django user in ``scope["user"]`` (401/403 before the consumer
  runs); :func:`load_django_user` and :func:`issue_ticket` for tickets naming Django users;
  :func:`DjangoAuthStack`, the stack replacing ``AuthMiddlewareStack``.
- :class:`RoomsConsumerMixin`: Rooms, presence and the resumed session in a consumer.
- Views (``asgi_ws.contrib.channels.views``): ``ticket_view``, ``asgi_ws_js``.
"""

from .auth import DjangoSessionBackend as DjangoSessionBackend
from .auth import issue_ticket as issue_ticket
from .auth import load_django_user as load_django_user
from .consumers import RoomsConsumerMixin as RoomsConsumerMixin
from .layer import BrokerChannelLayer as BrokerChannelLayer
from .layer import LayerStats as LayerStats
from .stacks import DjangoAuthStack as DjangoAuthStack

__all__ = [
    "BrokerChannelLayer",
    "DjangoAuthStack",
    "DjangoSessionBackend",
    "LayerStats",
    "RoomsConsumerMixin",
    "issue_ticket",
    "load_django_user",
]
