"""What bounds a connection's outbound queue, and how a message is measured against the bounds."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Literal

from ..close_codes import CloseCode, check_close_code
from ..exceptions import ConfigurationError
from ..types import Message

Policy = Literal["block", "drop_oldest", "drop_newest", "conflate", "close"]
POLICIES: frozenset[str] = frozenset({"block", "drop_oldest", "drop_newest", "conflate", "close"})
KeyFunc = Callable[[Message], "Hashable | None"]


@dataclass(frozen=True, slots=True)
class QueueLimits:
    """Bounds and overflow policy of a connection's outbound queue.

    Attributes:
        max_messages: queued application messages at most; None: no count limit.
        max_bytes: queued payload at most, in bytes (UTF-8 bytes for text); None: no byte
            limit. One message larger than the limit is still accepted into an empty queue.
        policy: what to do with a message that does not fit (see ``docs/middleware/backpressure.md``).
        block_timeout: seconds ``block`` waits for room before applying ``fallback``.
        fallback: policy applied after a ``block`` timeout, and by ``conflate`` for a message
            whose key is None or not queued while the queue is full. Not ``block``/``conflate``.
        conflate_key: ``key(message) -> hashable | None`` for the ``conflate`` policy.
        close_code: close code of the ``close`` policy.
        close_reason: close reason of the ``close`` policy.
    """

    max_messages: int | None = 1000
    max_bytes: int | None = 1_048_576
    policy: Policy = "drop_oldest"
    block_timeout: float = 5.0
    fallback: Policy = "close"
    conflate_key: KeyFunc | None = None
    close_code: int = CloseCode.TRY_AGAIN_LATER
    close_reason: str = "slow consumer"

    def __post_init__(self) -> None:
        if self.max_messages is None and self.max_bytes is None:
            raise ConfigurationError(
                "an outbound queue needs max_messages and/or max_bytes: unbounded queues are refused"
            )
        for name in ("max_messages", "max_bytes"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigurationError(f"{name} must be a positive integer or None")
        if self.policy not in POLICIES:
            raise ConfigurationError(f"policy must be one of {sorted(POLICIES)}, not {self.policy!r}")
        if self.fallback not in POLICIES - {"block", "conflate"}:
            raise ConfigurationError("fallback must be 'drop_oldest', 'drop_newest' or 'close'")
        if self.policy == "conflate" and self.conflate_key is None:
            raise ConfigurationError("policy='conflate' needs conflate_key=callable(message) -> key")
        if self.block_timeout <= 0:
            raise ConfigurationError("block_timeout must be positive")
        check_close_code(self.close_code)


def message_size(message: Message) -> int:
    """Payload size used for ``max_bytes``: bytes of binary, UTF-8 bytes of text (what goes on the wire).

    Only queued messages are measured. ASCII text (``isascii()`` reads a flag CPython keeps)
    is its length; other text is encoded to count it, about 0.75 ns a character here.
    """
    data = message.get("bytes")
    if data is not None:
        return len(data)
    text = message.get("text")
    if text is None:
        return 0
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


__all__ = ["POLICIES", "KeyFunc", "Policy", "QueueLimits", "message_size"]
