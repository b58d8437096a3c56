"""The client's pure decisions: backoff, close codes, heartbeat, acks, resume state."""

from __future__ import annotations

import pytest

from asgi_ws.client import STOP_CODES, Backoff, close_action, refusal_action
from asgi_ws.client.policy import ACK_INTERVAL, RESTART_CODES, Attempts, ack_due, heartbeat_step
from asgi_ws.client.resume import ResumeState
from asgi_ws.exceptions import ConfigurationError


def test_backoff_ceiling_doubles_up_to_the_cap() -> None:
    backoff = Backoff(base=0.5, cap=30.0)
    assert [backoff.ceiling(n) for n in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff.ceiling(10_000) == 30.0


def test_full_jitter_spans_zero_to_the_ceiling() -> None:
    backoff = Backoff(base=1.0, cap=10.0)
    assert backoff.delay(3, random=lambda: 0.0) == 0.0
    assert backoff.delay(3, random=lambda: 0.5) == 4.0
    assert backoff.delay(3, random=lambda: 0.999999) == pytest.approx(8.0, abs=1e-4)
    draws = [backoff.delay(2) for _ in range(2000)]
    assert all(0.0 <= d <= 4.0 for d in draws)
    assert min(draws) < 0.4 and max(draws) > 3.6  # spread over the whole range, not clustered at the top


def test_attempts_count_give_up_and_reset_after_a_stable_connection() -> None:
    attempts = Attempts(Backoff(base=1.0, cap=100.0, max_attempts=3, reset_after=10.0), random=lambda: 1.0)
    assert [attempts.next_delay(0.0) for _ in range(3)] == [1.0, 2.0, 4.0]
    assert attempts.next_delay(0.0) is None  # the fourth attempt is one too many
    attempts.connected(100.0)
    assert attempts.next_delay(109.0) is None  # up for 9 s only: still counted
    attempts.connected(200.0)
    assert attempts.next_delay(210.0) == 1.0  # up for reset_after: back to the first delay
    assert attempts.attempt == 1


def test_max_attempts_zero_never_reconnects_and_none_never_gives_up() -> None:
    assert Attempts(Backoff(max_attempts=0)).next_delay(0.0) is None
    forever = Attempts(Backoff(base=0.1, cap=0.2), random=lambda: 1.0)
    delays = [forever.next_delay(0.0) for _ in range(100)]
    assert delays[:2] == [0.1, 0.2] and delays[-1] == 0.2 and None not in delays
    assert forever.attempt == 100


def test_after_1001_or_1012_the_first_attempt_in_a_row_waits_only_the_restart_jitter() -> None:
    attempts = Attempts(Backoff(base=4.0, cap=60.0, restart_jitter=0.25), random=lambda: 1.0)
    attempts.connected(0.0)
    assert attempts.next_delay(3.0, 1001) == 0.25  # a drained worker: at once (jitter only), not 4 s
    assert attempts.next_delay(3.1) == 8.0  # that attempt counted: the next failure backs off
    attempts.connected(20.0)
    assert attempts.next_delay(25.0, 1012) == 16.0  # up 5 s only: a server going away again and again backs off
    attempts.connected(30.0)
    assert attempts.next_delay(45.0, 1012) == 0.25  # up reset_after: at once again
    for code in (1006, 1011, 1013, 4408, None):
        fresh = Attempts(Backoff(base=4.0, restart_jitter=0.25), random=lambda: 1.0)
        assert fresh.next_delay(0.0, code) == 4.0  # every other end waits the backoff
    assert Attempts(Backoff(restart_jitter=0.0)).next_delay(0.0, 1001) == 0.0
    assert {1001, 1012} == set(RESTART_CODES)


@pytest.mark.parametrize(
    "kwargs",
    [{"base": 0}, {"base": 2.0, "cap": 1.0}, {"max_attempts": -1}, {"reset_after": -1.0}, {"restart_jitter": -0.1}],
)
def test_backoff_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        Backoff(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "refresh", "expected"),
    [
        (1000, False, "end"),
        (1001, False, "reconnect"),
        (1006, False, "reconnect"),
        (1008, False, "reconnect"),  # asgi_ws's rate limit: the backoff slows the client down
        (1009, False, "reconnect"),  # the too-big message is not re-sent
        (1011, False, "reconnect"),
        (1012, False, "reconnect"),
        (1013, False, "reconnect"),
        (1003, False, "stop"),
        (1007, False, "stop"),
        (4401, True, "reconnect"),
        (4401, False, "stop"),
        (4403, True, "stop"),
        (4408, False, "reconnect"),
        (4409, True, "stop"),
        (4410, False, "reconnect"),
        (4000, False, "reconnect"),
    ],
)
def test_close_code_table(code: int, refresh: bool, expected: str) -> None:
    assert close_action(code, can_refresh=refresh) == expected


def test_application_stop_codes() -> None:
    assert close_action(4000, can_refresh=False, stop_codes={4000}) == "stop"
    assert {1003, 1007, 4403, 4409} == set(STOP_CODES)


@pytest.mark.parametrize(
    ("status", "refresh", "expected"),
    [
        (401, True, "reconnect"),
        (401, False, "stop"),
        (403, True, "stop"),
        (404, False, "stop"),
        (400, False, "stop"),
        (429, False, "reconnect"),
        (408, False, "reconnect"),
        (500, False, "reconnect"),
        (503, False, "reconnect"),
    ],
)
def test_refusal_table(status: int, refresh: bool, expected: str) -> None:
    assert refusal_action(status, can_refresh=refresh) == expected


def test_heartbeat_step() -> None:
    step = {"interval": 5.0, "timeout": 3.0}
    assert heartbeat_step(4.0, last_received=0.0, ping_sent_at=None, **step) == "wait"
    assert heartbeat_step(5.0, last_received=0.0, ping_sent_at=None, **step) == "ping"
    assert heartbeat_step(7.0, last_received=0.0, ping_sent_at=5.0, **step) == "wait"
    assert heartbeat_step(8.0, last_received=0.0, ping_sent_at=5.0, **step) == "dead"
    assert heartbeat_step(8.0, last_received=6.0, ping_sent_at=5.0, **step) == "wait"  # anything answers a ping
    assert heartbeat_step(11.0, last_received=6.0, ping_sent_at=5.0, **step) == "ping"


def test_ack_due_at_most_once_a_second_when_the_count_advanced() -> None:
    assert not ack_due(5, 5, 10.0, 0.0)
    assert not ack_due(6, 5, 0.5, 0.0)
    assert ack_due(6, 5, ACK_INTERVAL, 0.0)


def test_resume_state_new_session_resume_and_failure() -> None:
    state = ResumeState()
    assert state.query() == {"ws_resume": "new"} and not state.pending
    state.count()  # a frame sent before the session was numbered does not count
    state.on_session({"$ws": "session", "id": "s1", "token": "t1", "seq": 0, "window": 60})
    assert (state.session_id, state.token, state.received, state.window) == ("s1", "t1", 0, 60.0)
    for _ in range(3):
        state.count()
    state.on_session({"$ws": "session", "id": "s1", "token": "t2", "seq": 3})
    assert state.token == "t2" and state.received == 3  # the newest token, the same count
    assert state.query() == {"ws_resume": "t2", "ws_seq": "3"} and state.pending
    rooms = state.on_resumed({"$ws": "resumed", "id": "s1", "token": "t3", "seq": 3, "replay": 2, "rooms": ["a", 7]})
    assert rooms == ["a"] and state.token == "t3" and not state.pending
    state.count()
    state.count()
    assert state.received == 5
    assert state.query()["ws_seq"] == "5"
    assert state.on_resume_failed() is True
    assert (state.token, state.session_id, state.received) == (None, None, 0)
    assert state.query() == {"ws_resume": "new"}
    assert state.on_resume_failed() is False  # a new session that could not be created lost nothing


def test_resume_disabled_adds_no_parameter() -> None:
    assert ResumeState(enabled=False).query() == {}
