"""An idle resumable session holds no deque: one is made when messages wait, dropped when
they are gone (an empty deque is 760 bytes; issue 13's memory per connection)."""

from __future__ import annotations

from asgi_ws.resume.pending import PendingLog
from asgi_ws.resume.stores.base import EMPTY
from asgi_ws.resume.stores.memory import _Record


def test_the_pending_log_of_an_idle_session_holds_no_deque() -> None:
    log = PendingLog(max_messages=100, max_bytes=1 << 20)
    assert log.unsent is EMPTY and log._retained is EMPTY and not log.busy
    for seq in (1, 2, 3):
        log.frame(seq, b"frame %d" % seq, {"type": "websocket.send", "text": str(seq)})
    assert list(log.unsent) == [{"type": "websocket.send", "text": str(s)} for s in (1, 2, 3)]
    write = log.take("s", "owner", 60.0)
    assert [seq for seq, _ in write.entries] == [1]
    assert [m["text"] for m in log.stored(3)] == ["1", "2", "3"]
    assert log.unsent is EMPTY and len(log._retained) == 3  # stored, not acknowledged yet
    log.ack(2)
    assert len(log._retained) == 1 and log.keep_from() == 3
    log.ack(3)
    assert log._retained is EMPTY and log.keep_from() == 4
    assert not log.wait(4, {"type": "websocket.send", "text": "4"})  # nothing pending: sent at once
    log.frame(5, b"five", {"type": "websocket.send", "text": "5"})
    log.failed()
    assert log.unsent is EMPTY


def test_a_stored_session_trimmed_to_nothing_holds_no_deque() -> None:
    record = _Record("owner", None)
    assert record.entries is EMPTY
    record.append([(1, [b"a", b"b"])])
    assert len(record.entries) == 1 and record.head == 2
    record.trim(2)
    assert record.entries[0] == (2, [b"b"]) and record.first == 2
    record.trim(3)
    assert record.entries is EMPTY and record.first == 3
