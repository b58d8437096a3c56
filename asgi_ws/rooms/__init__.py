"""Rooms: groups of connections across worker processes, with presence, on a pluggable broker."""

from .core import Rooms as Rooms
from .core import RoomsStats as RoomsStats
from .presence import PresenceEntry as PresenceEntry
from .presence import PresenceEvent as PresenceEvent

__all__ = ["PresenceEntry", "PresenceEvent", "Rooms", "RoomsStats"]
