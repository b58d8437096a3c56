"""Rooms: groups of connections across worker processes, with presence, on a pluggable broker;
server-side subscriptions to them."""

from .core import Rooms as Rooms
from .core import RoomsStats as RoomsStats
from .presence import PresenceEntry as PresenceEntry
from .presence import PresenceEvent as PresenceEvent
from .subscription import HistoryGap as HistoryGap
from .subscription import RoomMessage as RoomMessage
from .subscription import Subscription as Subscription
from .subscription import SubscriptionError as SubscriptionError
from .subscription import SubscriptionOverflow as SubscriptionOverflow

__all__ = [
    "HistoryGap",
    "PresenceEntry",
    "PresenceEvent",
    "RoomMessage",
    "Rooms",
    "RoomsStats",
    "Subscription",
    "SubscriptionError",
    "SubscriptionOverflow",
]
