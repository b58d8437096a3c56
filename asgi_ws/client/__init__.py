"""asgi_ws.client: a Python client for asgi_ws endpoints, on the ``websockets`` library.

It speaks the control protocol (``docs/protocol.md``) like the browser client
``asgi-ws.js``: hello/welcome, heartbeat, reconnection with full-jitter backoff, session
resumption, pub/sub subscriptions restored after a reconnection, a list of URLs (the servers
of a cluster) tried in turn. Guide: ``docs/client.md``.

    async with connect("wss://example.com/ws") as client:
        await client.subscribe("news")
        async for message in client:
            ...

Needs ``websockets>=13`` (``asgi_ws`` itself imports neither this package nor websockets).
"""

from .client import Client as Client
from .client import connect as connect
from .events import Event as Event
from .events import EventKind as EventKind
from .events import EventStream as EventStream
from .exceptions import ClientClosed as ClientClosed
from .exceptions import ClientError as ClientError
from .exceptions import ClientGaveUp as ClientGaveUp
from .exceptions import HandshakeRefused as HandshakeRefused
from .exceptions import RequestInterrupted as RequestInterrupted
from .exceptions import RequestRefused as RequestRefused
from .exceptions import SendBufferFull as SendBufferFull
from .exceptions import ServerClosed as ServerClosed
from .inbox import Data as Data
from .options import ClientOptions as ClientOptions
from .options import TicketSource as TicketSource
from .options import UrlSource as UrlSource
from .policy import STOP_CODES as STOP_CODES
from .policy import Backoff as Backoff
from .policy import close_action as close_action
from .policy import refusal_action as refusal_action

__all__ = [
    "STOP_CODES",
    "Backoff",
    "Client",
    "ClientClosed",
    "ClientError",
    "ClientGaveUp",
    "ClientOptions",
    "Data",
    "Event",
    "EventKind",
    "EventStream",
    "HandshakeRefused",
    "RequestInterrupted",
    "RequestRefused",
    "SendBufferFull",
    "ServerClosed",
    "TicketSource",
    "UrlSource",
    "close_action",
    "connect",
    "refusal_action",
]
