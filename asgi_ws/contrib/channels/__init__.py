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
- :class:`LeanDispatchMixin` (and :class:`LeanWebsocketConsumer`,
  :class:`LeanJsonWebsocketConsumer`): Channels consumers without the per-message database
  hop and task of Channels' dispatch, handlers still one at a time and in order.
- Views (``asgi_ws.contrib.channels.views``): ``ticket_view``, ``asgi_ws_js``.
"""

from .auth import DjangoSessionBackend as DjangoSessionBackend
from .auth import issue_ticket as issue_ticket
from .auth import load_django_user as load_django_user
from .consumers import RoomsConsumerMixin as RoomsConsumerMixin
from .layer import BrokerChannelLayer as BrokerChannelLayer
from .layer import LayerStats as LayerStats
from .lean import LeanDispatchMixin as LeanDispatchMixin
from .lean import LeanJsonWebsocketConsumer as LeanJsonWebsocketConsumer
from .lean import LeanWebsocketConsumer as LeanWebsocketConsumer
from .stacks import DjangoAuthStack as DjangoAuthStack

__all__ = [
    "BrokerChannelLayer",
    "DjangoAuthStack",
    "DjangoSessionBackend",
    "LayerStats",
    "LeanDispatchMixin",
    "LeanJsonWebsocketConsumer",
    "LeanWebsocketConsumer",
    "RoomsConsumerMixin",
    "issue_ticket",
    "load_django_user",
]
