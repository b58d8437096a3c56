"""The ASGI application: Django for HTTP, the chat consumers behind asgi_ws for WebSockets.

Handshake middlewares refuse before any consumer code runs: OriginMiddleware (a page of
another site: 403) and AuthMiddleware with the Django session (not logged in: 401, an
inactive user: 403; under daphne, which has no denial extension, every refusal is a 403).
Session middlewares then keep the connection healthy: heartbeat, bounded send queue, rate
limit, and resumption (a page that reconnects within two minutes misses nothing).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_channels.settings")
django_asgi_app = get_asgi_application()  # sets Django up before the consumers are imported

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from asgi_ws import (  # noqa: E402
    AuthMiddleware,
    BackpressureMiddleware,
    HeartbeatMiddleware,
    OriginMiddleware,
    RateLimitMiddleware,
    ResumeMiddleware,
)
from asgi_ws.contrib.channels import DjangoSessionBackend  # noqa: E402

from .chat.consumers import rooms  # noqa: E402
from .chat.routing import websocket_urlpatterns  # noqa: E402

websocket = URLRouter(websocket_urlpatterns)
websocket = ResumeMiddleware(
    websocket,
    secret_keys=[*settings.SECRET_KEY_FALLBACKS, settings.SECRET_KEY],
    store=settings.ASGI_WS_SESSION_STORE,
    rooms=rooms,
)
websocket = RateLimitMiddleware(websocket, rate=10, burst=20, max_message_size=16 * 1024)
websocket = BackpressureMiddleware(websocket, max_messages=500, policy="drop_oldest")
websocket = HeartbeatMiddleware(websocket, interval=20, timeout=20)
websocket = AuthMiddleware(websocket, backend=DjangoSessionBackend())
websocket = OriginMiddleware(websocket, allow_same_origin=True)

application = ProtocolTypeRouter({"http": django_asgi_app, "websocket": websocket})
