// The pure parts: protocol codec, backoff schedule, close codes, heartbeat, resume bookkeeping, send queue.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  Attempts,
  ceiling,
  closeAction,
  decode,
  DEFAULT_BACKOFF,
  encode,
  heartbeatStep,
  isControl,
  parseDelivery,
  ResumeState,
  SendQueue,
  SessionPersistence,
} from "../dist/asgi-ws.mjs";
import { MemoryStorage } from "./fakes.mjs";

describe("protocol codec", () => {
  test("encode puts $ws first, as the server requires, and it cannot be overridden", () => {
    assert.equal(encode("ping", { id: 7 }), '{"$ws":"ping","id":7}');
    assert.equal(encode("hello", { $ws: "evil", v: 1 }), '{"$ws":"hello","v":1}');
    assert.equal(encode("pong"), '{"$ws":"pong"}');
  });
  test("decode takes control frames only", () => {
    assert.deepEqual(decode('{"$ws":"ping","id":1}'), { $ws: "ping", id: 1 });
    assert.deepEqual(decode('{"$ws": "pong"}'), { $ws: "pong" });
    for (const frame of ['{ "$ws":"ping"}', '{"$ws":', '{"$ws":""}', '{"$ws":3}', '["$ws"]', "hello", new ArrayBuffer(2)]) {
      assert.equal(decode(frame), null, String(frame));
    }
    assert.equal(isControl('{"$ws":"x"}'), true);
    assert.equal(isControl(new Uint8Array([123])), false);
  });
  test("deliveries are recognised, other data is not", () => {
    assert.deepEqual(parseDelivery('{"channel":"news","data":{"a":1}}'), { channel: "news", data: { a: 1 } });
    assert.deepEqual(parseDelivery('{"channel":"b","binary":"AAE="}'), { channel: "b", binary: "AAE=" });
    assert.equal(parseDelivery('{"channel":'), null);
    assert.equal(parseDelivery('{"channel":5}'), null);
    assert.equal(parseDelivery('{"data":1,"channel":"x"}'), null);
    assert.equal(parseDelivery(new ArrayBuffer(1)), null);
  });
});

describe("backoff", () => {
  test("full jitter: each delay is random * min(cap, base * 2**attempt)", () => {
    const backoff = { ...DEFAULT_BACKOFF, base: 0.5, cap: 4 };
    const attempts = new Attempts(backoff, () => 1);
    const delays = Array.from({ length: 7 }, () => attempts.nextDelay(0));
    assert.deepEqual(delays, [0.5, 1, 2, 4, 4, 4, 4]);
    const half = new Attempts(backoff, () => 0.5);
    assert.deepEqual([half.nextDelay(0), half.nextDelay(0)], [0.25, 0.5]);
    assert.equal(ceiling(backoff, 200), 4);
  });
  test("the counter goes back to 0 after a connection stayed up resetAfter seconds, not before", () => {
    const attempts = new Attempts({ ...DEFAULT_BACKOFF, resetAfter: 10 }, () => 1);
    attempts.nextDelay(0);
    attempts.nextDelay(0);
    attempts.connected(1_000);
    assert.equal(attempts.nextDelay(1_000 + 9_999), 2); // up 9.999 s: attempt 2
    attempts.connected(50_000);
    assert.equal(attempts.nextDelay(60_000), 0.5); // up 10 s: back to the first delay
    assert.equal(attempts.attempt, 1);
  });
  test("1001 and 1012 come back within restartJitter once, then back off", () => {
    const attempts = new Attempts({ ...DEFAULT_BACKOFF, base: 10, cap: 60, restartJitter: 0.25 }, () => 0.5);
    assert.equal(attempts.nextDelay(0, 1012), 0.125);
    assert.equal(attempts.nextDelay(0, 1001), 10);
  });
  test("maxAttempts: null once exhausted; 0 never reconnects", () => {
    const attempts = new Attempts({ ...DEFAULT_BACKOFF, maxAttempts: 2 }, () => 0);
    assert.deepEqual([attempts.nextDelay(0), attempts.nextDelay(0), attempts.nextDelay(0)], [0, 0, null]);
    assert.equal(new Attempts({ ...DEFAULT_BACKOFF, maxAttempts: 0 }).nextDelay(0), null);
  });
  test("close codes: the same table as the Python client", () => {
    const action = (code, canRefresh = false, stopCodes = []) => closeAction(code, { canRefresh, stopCodes });
    assert.equal(action(1000), "end");
    for (const code of [1003, 1007, 4403, 4409]) assert.equal(action(code), "stop", String(code));
    for (const code of [1001, 1006, 1008, 1011, 1012, 1013, 4404, 4408, 4410, 4000]) {
      assert.equal(action(code), "reconnect", String(code));
    }
    assert.equal(action(4401), "stop");
    assert.equal(action(4401, true), "reconnect");
    assert.equal(action(4000, false, [4000]), "stop");
  });
  test("heartbeat: ping after interval of silence, dead after timeout without any frame", () => {
    const step = (now, lastReceived, pingSentAt) => heartbeatStep(now, { lastReceived, pingSentAt, interval: 1000, timeout: 500 });
    assert.equal(step(999, 0, null), "wait");
    assert.equal(step(1000, 0, null), "ping");
    assert.equal(step(1400, 0, 1000), "wait");
    assert.equal(step(1500, 0, 1000), "dead");
    assert.equal(step(1500, 1200, 1000), "wait"); // a frame after the ping: alive
    assert.equal(step(2200, 1200, 1000), "ping");
  });
});

describe("resume bookkeeping", () => {
  test("a new session, counting, resuming at the count, and the server's answers", () => {
    const state = new ResumeState();
    assert.deepEqual(state.query(), { ws_resume: "new" });
    assert.equal(state.pending, false);
    assert.equal(state.onSession({ $ws: "session", id: "s1", token: "t1", seq: 0, window: 120 }), true);
    assert.deepEqual([state.count(), state.count(), state.count()], [1, 2, 3]);
    assert.equal(state.onSession({ $ws: "session", id: "s1", token: "t2", seq: 3 }), false); // a fresh token only
    assert.equal(state.received, 3);
    assert.deepEqual(state.query(), { ws_resume: "t2", ws_seq: "3" });
    assert.equal(state.pending, true);
    assert.deepEqual(state.onResumed({ $ws: "resumed", id: "s1", token: "t3", seq: 3, replay: 2, rooms: ["a", 5, "b"] }), ["a", "b"]);
    assert.equal(state.pending, false);
    assert.equal(state.token, "t3");
    assert.equal(state.window, 120);
    assert.deepEqual(state.snapshot(), { id: "s1", token: "t3", received: 3 });
  });
  test("resume_failed and 4404 forget the session; other closes keep it", () => {
    const state = new ResumeState();
    state.onSession({ $ws: "session", id: "s", token: "t" });
    state.count();
    assert.equal(state.onClose(1006), false);
    assert.equal(state.token, "t");
    state.query();
    assert.equal(state.onResumeFailed(), true);
    assert.equal(state.token, null);
    assert.equal(state.received, 0);
    assert.deepEqual(state.query(), { ws_resume: "new" });
    state.onSession({ $ws: "session", id: "s2", token: "u" });
    assert.equal(state.onClose(4404), true);
    assert.equal(state.session, undefined);
    assert.equal(state.id, null);
    assert.deepEqual(new ResumeState(false).query(), {});
  });
  test("sessionStorage: saved, taken once (a duplicated tab never gets it), corrupt entries ignored", () => {
    const storage = new MemoryStorage();
    const kept = new SessionPersistence(storage, "k");
    kept.save({ id: "s", token: "t", received: 41 });
    assert.deepEqual(kept.take(), { id: "s", token: "t", received: 41 });
    assert.equal(kept.take(), null);
    storage.setItem("k", "{not json");
    assert.equal(kept.take(), null);
    storage.setItem("k", JSON.stringify({ id: "s", token: "t", received: -1 }));
    assert.equal(kept.take(), null);
    kept.save({ id: "s", token: "t", received: 1 });
    kept.save(null);
    assert.equal(storage.getItem("k"), null);
  });
});

describe("send queue", () => {
  test("reject: the new message is refused when full", () => {
    const queue = new SendQueue(2, "reject");
    assert.deepEqual([queue.push(1), queue.push(2)].map((r) => r.accepted), [true, true]);
    assert.deepEqual(queue.push(3), { accepted: false, dropped: null });
    assert.deepEqual(queue.clear(), [1, 2]);
    assert.equal(queue.length, 0);
  });
  test("drop_oldest: the oldest makes room; 0 keeps nothing", () => {
    const queue = new SendQueue(2, "drop_oldest");
    queue.push(1);
    queue.push(2);
    assert.deepEqual(queue.push(3), { accepted: true, dropped: 1 });
    assert.deepEqual(queue.items, [2, 3]);
    assert.deepEqual(new SendQueue(0, "drop_oldest").push(1), { accepted: false, dropped: null });
    assert.throws(() => new SendQueue(1, "drop_newest"), RangeError);
  });
});
