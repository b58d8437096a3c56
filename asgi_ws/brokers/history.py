"""Positions in a channel's history, and the one rule every history broker answers by.

A broker that keeps history (``?history=N``) gives each message of a channel a **position**
``"<epoch>-<n>"``: ``n`` counts the channel's messages from 1 within an *epoch*, the time in
milliseconds when the channel's history was (re)created. Positions are therefore consecutive:
the message before ``"E-n"`` is ``"E-(n-1)"`` (:func:`previous`), ``"E-0"`` is before the
epoch's first one, and :data:`START` (``"0-0"``) is before anything. A receiver that knows the
last position it saw tells a gap from the next message alone, and a broker tells exactly
whether its history still reaches back to a position: it must hold the message after it.

A new epoch starts only when the channel's history is created again: the Redis stream
expired after ``history_ttl`` quiet seconds, or an operator deleted it. A position of an older
epoch then continues at the first message of the current one (:func:`after_history`): that is
what a client resuming within its window missed, since an epoch expires only after the
channel was quiet for longer than any resume window should be (``history_ttl`` > ``window``).

:func:`after_history` is the rule: what the four brokers read (atomically, in one step) goes
through it, so they answer alike and never return part of what followed a position.
"""

from __future__ import annotations

from collections.abc import Sequence

from .base import START, position_key

Entry = tuple[str, bytes]


def position(epoch: int, number: int) -> str:
    """The position of the ``number``-th message of ``epoch``."""
    return f"{epoch}-{number}"


def previous(position: str) -> str:
    """The position of the message before ``position`` in its channel (``"E-0"`` for the first of an epoch)."""
    epoch, _, number = position.partition("-")
    return f"{epoch}-{int(number) - 1}"


def after_history(
    after: str, oldest: str | None, entries: Sequence[Entry], *, last: str | None = None
) -> list[Entry] | None:
    """What followed position ``after``, from one read of a channel's history; None when some of
    it is no longer kept.

    Args:
        after: the position asked about.
        oldest: the position of the oldest message kept, None when the channel keeps none.
        entries: the kept messages with a position above ``after`` (every kept one, for an
            ``after`` of an older epoch), oldest first, read together with ``oldest``.
        last: the position of the channel's newest message when the broker knows it even with
            nothing kept (a counter that outlives its messages); None if it cannot tell.
    """
    after_epoch, after_number = position_key(after)
    if oldest is None:
        if last is not None and after != START:
            last_epoch, last_number = position_key(last)
            if last_epoch == after_epoch and last_number > after_number:
                return None  # everything after `after` aged out
        return []
    epoch, first = position_key(oldest)
    if after_epoch > epoch:
        return None  # from a history that is gone (deleted, then created again)
    expected = 1 if after_epoch < epoch else after_number + 1
    if first > expected:
        return None  # trimmed: the message after `after` is no longer kept
    result = list(entries)
    # Never a partial answer, whatever the broker read: a history is in strictly increasing
    # order, so its first and last positions, and its length, tell whether it has a hole.
    if result and (
        position_key(result[0][0]) != (epoch, expected)
        or position_key(result[-1][0]) != (epoch, expected + len(result) - 1)
    ):
        return None
    return result


__all__ = ["START", "Entry", "after_history", "position", "previous"]
