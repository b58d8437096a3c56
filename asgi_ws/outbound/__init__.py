"""The single outbound path of a connection: eager sends, and a bounded queue only while backlogged.

Every message the library or the application sends on an asgi_ws connection after the
handshake goes through one :class:`Outbound`, which keeps exactly one write in flight per
socket (uvicorn's legacy ``websockets`` implementation fails outright on two concurrent
blocked writes).

While the client keeps up, a message is written **eagerly**: the server's ``send`` coroutine
is driven by hand and, as long as the socket is writable, it completes without suspending,
so the message costs no task, no queue entry and no extra loop iteration. The first time a
write suspends (the client stopped reading and the transport paused), the started coroutine
is handed to a writer task, and until that task has drained the backlog new messages wait in
a bounded queue where the overflow policy applies. This is the design PERF_NOTES asks for:
straight through while the connection keeps up, queued (with a policy) only when it does not.

The parts, one concern each:

- :mod:`.limits`: :class:`QueueLimits` (bounds, policies) and :func:`message_size`;
- :mod:`.queue`: :class:`~.queue.OutboundQueue`, the queue and its overflow decisions, free of I/O;
- :mod:`.eager`: :class:`~.eager.EagerWriter`, driving the server's ``send`` coroutine by hand,
  and the writer task that finishes a write that suspended;
- :mod:`.batching`: :class:`BatchLimits`, and what a connection that batches keeps;
- :mod:`.totals`: :class:`OutboundTotals`, counters over the connections of a middleware;
- :mod:`.path`: :class:`Outbound`, which puts them together for one connection.
"""

from .batching import BatchLimits
from .limits import POLICIES, KeyFunc, Policy, QueueLimits, message_size
from .path import HANDLED, MAX_PENDING_CONTROL, SLOW, WAIT, Outbound
from .totals import OutboundTotals

__all__ = [
    "HANDLED",
    "BatchLimits",
    "MAX_PENDING_CONTROL",
    "POLICIES",
    "SLOW",
    "WAIT",
    "KeyFunc",
    "Outbound",
    "OutboundTotals",
    "Policy",
    "QueueLimits",
    "message_size",
]
