"""asgi_ws: production WebSockets for any ASGI application.

Composable middlewares (origin allow-lists, handshake auth, subprotocol negotiation,
connection limits, heartbeat, backpressure, rate limits...)
that work around any ASGI WebSocket endpoint: Starlette, FastAPI, Django Channels or a bare
ASGI callable. This module imports no optional dependency.
"""

from .close_codes import CloseCode as CloseCode
from .connection import Connection as Connection
from .connection import connection_of as connection_of
from .deny import deny as deny
from .exceptions import AsgiWsError as AsgiWsError
from .exceptions import AuthenticationFailed as AuthenticationFailed
from .exceptions import BrokerClosed as BrokerClosed
from .exceptions import BrokerError as BrokerError
from .exceptions import BrokerUnavailable as BrokerUnavailable
from .exceptions import ConfigurationError as ConfigurationError
from .exceptions import ConnectionClosed as ConnectionClosed
from .exceptions import CredentialsExpired as CredentialsExpired
from .exceptions import HandshakeRejected as HandshakeRejected
from .exceptions import MissingDependencyError as MissingDependencyError
from .exceptions import OriginRejected as OriginRejected
from .exceptions import PermissionDenied as PermissionDenied
from .exceptions import SubprotocolRejected as SubprotocolRejected
from .middleware.auth import AuthMiddleware as AuthMiddleware
from .middleware.backpressure import BackpressureMiddleware as BackpressureMiddleware
from .middleware.backpressure import queue_stats as queue_stats
from .middleware.connlimit import ConnectionLimitMiddleware as ConnectionLimitMiddleware
from .middleware.heartbeat import HeartbeatMiddleware as HeartbeatMiddleware
from .middleware.origin import OriginMiddleware as OriginMiddleware
from .middleware.ratelimit import RateLimitMiddleware as RateLimitMiddleware
from .middleware.resume import ResumeMiddleware as ResumeMiddleware
from .middleware.subprotocol import SubprotocolMiddleware as SubprotocolMiddleware
from .outbound import BatchLimits as BatchLimits
from .outbound import QueueLimits as QueueLimits
from .protocol import ProtocolError as ProtocolError
from .pubsub import PubSubApp as PubSubApp
from .rooms import PresenceEntry as PresenceEntry
from .rooms import PresenceEvent as PresenceEvent
from .rooms import Rooms as Rooms

__version__ = "0.1.0"

__all__ = [
    "AsgiWsError",
    "AuthMiddleware",
    "AuthenticationFailed",
    "BackpressureMiddleware",
    "BatchLimits",
    "BrokerClosed",
    "BrokerError",
    "BrokerUnavailable",
    "CloseCode",
    "ConfigurationError",
    "Connection",
    "ConnectionClosed",
    "ConnectionLimitMiddleware",
    "CredentialsExpired",
    "HandshakeRejected",
    "HeartbeatMiddleware",
    "MissingDependencyError",
    "OriginMiddleware",
    "OriginRejected",
    "PermissionDenied",
    "PresenceEntry",
    "PresenceEvent",
    "ProtocolError",
    "PubSubApp",
    "QueueLimits",
    "RateLimitMiddleware",
    "ResumeMiddleware",
    "Rooms",
    "SubprotocolMiddleware",
    "SubprotocolRejected",
    "__version__",
    "connection_of",
    "deny",
    "queue_stats",
]
