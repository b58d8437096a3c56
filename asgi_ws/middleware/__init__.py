"""The asgi_ws middlewares; each is a plain ASGI class taking ``app`` first and keyword options."""

from .auth import AuthMiddleware as AuthMiddleware
from .backpressure import BackpressureMiddleware as BackpressureMiddleware
from .connlimit import ConnectionLimitMiddleware as ConnectionLimitMiddleware
from .heartbeat import HeartbeatMiddleware as HeartbeatMiddleware
from .origin import OriginMiddleware as OriginMiddleware
from .ratelimit import RateLimitMiddleware as RateLimitMiddleware
from .subprotocol import SubprotocolMiddleware as SubprotocolMiddleware

__all__ = [
    "AuthMiddleware",
    "BackpressureMiddleware",
    "ConnectionLimitMiddleware",
    "HeartbeatMiddleware",
    "OriginMiddleware",
    "RateLimitMiddleware",
    "SubprotocolMiddleware",
]
