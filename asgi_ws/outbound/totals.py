"""Counters summed over the connections that share them (one set per BackpressureMiddleware, or Rooms)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .path import Outbound


class OutboundTotals:
    """Counters summed over every connection that shares them.

    What each connection counts on its own (``sent``, ``dropped``, ``conflated``, ``queued``)
    is summed when read, from the live connections and those that ended, so no message costs
    more than its own connection's count; the rare events (``closed_for_slowness``,
    ``backlogged``) are counted here as they happen.
    """

    __slots__ = ("_ended", "_live", "backlogged", "closed_for_slowness")

    def __init__(self) -> None:
        self.closed_for_slowness = 0
        self.backlogged = 0  # connections with a writer task right now
        #: sent, dropped, conflated and batches of the connections that ended.
        self._ended = [0, 0, 0, 0]
        self._live: set[Outbound] = set()

    def join(self, outbound: Outbound) -> None:
        """Count ``outbound`` in these totals from now on."""
        self._live.add(outbound)

    def leave(self, outbound: Outbound) -> None:
        """``outbound``'s connection ended: keep its counts, forget it."""
        if outbound in self._live:
            self._live.discard(outbound)
            ended = self._ended
            ended[0] += outbound.sent
            ended[1] += outbound.dropped
            ended[2] += outbound.conflated
            ended[3] += outbound.batches

    @property
    def sent(self) -> int:
        """Application messages written, over every connection."""
        return self._ended[0] + sum(outbound.sent for outbound in self._live)

    @property
    def dropped(self) -> int:
        """Application messages dropped by an overflow policy (or by a close), over every connection."""
        return self._ended[1] + sum(outbound.dropped for outbound in self._live)

    @property
    def conflated(self) -> int:
        """Application messages replaced by a newer one with the same key, over every connection."""
        return self._ended[2] + sum(outbound.conflated for outbound in self._live)

    @property
    def batches(self) -> int:
        """Batch frames written, over every connection (each carries several messages counted in ``sent``)."""
        return self._ended[3] + sum(outbound.batches for outbound in self._live)

    @property
    def queued(self) -> int:
        """Application messages waiting right now, over every live connection."""
        return sum(outbound.queued for outbound in self._live)

    def as_dict(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "dropped": self.dropped,
            "conflated": self.conflated,
            "closed_for_slowness": self.closed_for_slowness,
            "queued": self.queued,
            "backlogged": self.backlogged,
            "batches": self.batches,
        }


__all__ = ["OutboundTotals"]
