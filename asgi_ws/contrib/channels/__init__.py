"""Django Channels on asgi_ws (``pip install 'asgi-ws[django]'``).

- :class:`BrokerChannelLayer`: a Channels channel layer on asgi_ws's brokers (``memory://``,
  ``redis://``, ``postgres://``, ``nats://``) where ``group_send`` is one broker publish per
  group, whatever its size (docs/channels-layer.md)::

      CHANNEL_LAYERS = {"default": {
          "BACKEND": "asgi_ws.contrib.channels.BrokerChannelLayer",
          "CONFIG": {"url": "redis://127.0.0.1:6379/0"},
      }}
"""

from .layer import BrokerChannelLayer as BrokerChannelLayer
from .layer import LayerStats as LayerStats

__all__ = ["BrokerChannelLayer", "LayerStats"]
