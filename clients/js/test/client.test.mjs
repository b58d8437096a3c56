// The client against a fake WebSocket and a fake clock: what it sends, when it reconnects, what it resumes.
import assert from "node:assert/strict";
import { test } from "node:test";
import { AsgiWs, AsgiWsError } from "../dist/asgi-ws.mjs";
import { FakeClock, fakeWebSocket, MemoryStorage, settle } from "./fakes.mjs";

function make(options = {}, url = "ws://server.test/ws") {
  const clock = new FakeClock();
  const Socket = fakeWebSocket();
  const events = [];
  const client = new AsgiWs(url, { WebSocket: Socket, clock, random: () => 1, ...options });
  for (const kind of ["open", "close", "reconnecting", "giveup", "resumed", "resume_failed", "session_lost", "message", "raw", "error", "state"]) {
    client.on(kind, (detail) => events.push([kind, detail]));
  }
  const kinds = (...only) => events.map(([kind]) => kind).filter((k) => !only.length || only.includes(k));
  return { client, clock, Socket, events, kinds };
}

async function connected(t, session = null) {
  t.client.connect();
  await settle();
  const ws = t.Socket.last;
  ws.accept();
  if (session) ws.deliver({ $ws: "session", id: session, token: `${session}-t1`, seq: 0, window: 120 });
  return ws;
}

test("says hello, answers pings, hands over data frames only, and restores subscriptions on open", async () => {
  const t = make();
  t.client.subscribe("news", { presence: true, meta: { name: "a" } });
  const ws = await connected(t);
  assert.equal(ws.binaryType, "arraybuffer");
  assert.equal(ws.url.searchParams.get("ws_resume"), "new");
  assert.deepEqual(ws.controls.slice(0, 2), [
    { $ws: "hello", v: 1, batch: true },
    { $ws: "subscribe", channel: "news", presence: true, meta: { name: "a" } },
  ]);
  ws.deliver({ $ws: "ping", id: 4 });
  assert.deepEqual(ws.controls.at(-1), { $ws: "pong", id: 4 });
  ws.deliver('{"channel":"news","data":[1]}');
  ws.deliver("plain");
  const bytes = new Uint8Array([0, 255]).buffer;
  ws.deliver(bytes);
  assert.deepEqual(t.events.filter(([k]) => k === "message" || k === "raw").map(([, d]) => d), [
    { channel: "news", data: [1] },
    "plain",
    bytes,
  ]);
  assert.equal(t.client.received, 3);
});

test("a batch frame is unpacked: one event a message, in order, each counted and acknowledged; batch: false does not ask", async () => {
  const t = make();
  const ws = await connected(t, "s1");
  ws.deliver("first");
  const texts = [];
  for (let i = 0; i < 150; i++) texts.push(i % 2 ? `{"channel":"c","data":${i}}` : `raw ${i} "quoted" é😀`);
  ws.deliver(JSON.stringify({ $ws: "batch", m: texts }));
  ws.deliver("last");
  const got = t.events.filter(([k]) => k === "message" || k === "raw").map(([, d]) => d);
  assert.equal(got.length, 152);
  assert.deepEqual(got.slice(1, 151), texts.map((x, i) => (i % 2 ? { channel: "c", data: i } : x)));
  assert.deepEqual([got[0], got[151]], ["first", "last"]);
  assert.equal(t.client.received, 152); // resumption counts messages, not frames
  assert.deepEqual(ws.controls.filter((m) => m.$ws === "ack"), [{ $ws: "ack", seq: 100 }]);
  ws.deliver({ $ws: "batch", m: ["x", 1] }); // not a batch of messages: ignored, nothing counted
  assert.equal(t.client.received, 152);

  const plain = make({ batch: false });
  const other = await connected(plain, "s2");
  assert.deepEqual(other.controls[0], { $ws: "hello", v: 1 });
  // A batch it did not ask for is unpacked all the same (dropping it would put the count out of step).
  other.deliver(JSON.stringify({ $ws: "batch", m: ["u1", '{"$ws":"ping","id":1}'] }));
  const unasked = plain.events.filter(([k]) => k === "raw").map(([, d]) => d);
  assert.deepEqual(unasked, ["u1", '{"$ws":"ping","id":1}']); // strings are data, whatever they hold
  assert.equal(plain.client.received, 2);
  assert.equal(other.controls.filter((m) => m.$ws === "pong").length, 0);
});

test("the backoff schedule on a fake clock: full jitter, doubling to the cap, reset after a stable connection", async () => {
  const t = make({ backoff: { base: 1, cap: 4, resetAfter: 10 } });
  t.client.connect();
  await settle();
  const delays = [];
  t.client.on("reconnecting", ({ delay }) => delays.push(delay));
  for (let i = 0; i < 5; i++) {
    t.Socket.last.drop(1006); // refused: the handshake never opens
    t.clock.advance(delays.at(-1) * 1000);
    await settle();
  }
  assert.deepEqual(delays, [1, 2, 4, 4, 4]);
  assert.equal(t.Socket.made.length, 6);
  t.Socket.last.accept();
  t.clock.advance(10_000); // stable for resetAfter
  t.Socket.last.drop(1006);
  assert.deepEqual(delays.slice(5), [1]);
  assert.equal(t.client.attempt, 1);
});

test("a half-open socket: the client's ping goes unanswered, it leaves the socket and resumes where it was", async () => {
  const t = make({ pingInterval: 2, pingTimeout: 1, backoff: { base: 0.1 } });
  const ws = await connected(t, "s1");
  ws.deliver('{"channel":"c","data":1}');
  ws.deliver('{"channel":"c","data":2}');
  t.clock.advance(2_000);
  assert.deepEqual(ws.controls.at(-1), { $ws: "ping", id: 1 });
  t.clock.advance(600);
  assert.equal(t.client.state, "open"); // not dead yet
  t.clock.advance(600);
  assert.equal(ws.terminated, true); // no closing handshake to wait for on a dead network
  assert.deepEqual(t.events.find(([k]) => k === "close")[1], { code: 4408, reason: "heartbeat timeout (client)" });
  assert.deepEqual(t.kinds("close", "reconnecting"), ["close", "reconnecting"]);
  ws.deliver('{"channel":"c","data":3}'); // a late frame of the dead socket is not counted
  t.clock.advance(100);
  await settle();
  const next = t.Socket.last;
  assert.notEqual(next, ws);
  assert.equal(next.url.searchParams.get("ws_resume"), "s1-t1");
  assert.equal(next.url.searchParams.get("ws_seq"), "2");
});

test("resuming: queued publishes wait for the answer, resumed rooms are not subscribed again, publishes are acknowledged", async () => {
  const t = make({ backoff: { base: 0.1 } });
  t.client.subscribe("a");
  t.client.subscribe("b");
  const ws = await connected(t, "s");
  ws.deliver({ $ws: "subscribed", channel: "a" });
  ws.deliver({ $ws: "subscribed", channel: "b" });
  const first = t.client.publish("a", { n: 1 });
  assert.deepEqual(ws.controls.at(-1), { $ws: "publish", channel: "a", data: { n: 1 }, id: "p1" });
  ws.drop(1006);
  await assert.rejects(first, (e) => e instanceof AsgiWsError && e.code === "interrupted");
  const queued = t.client.publish("a", { n: 2 }, 42);
  assert.equal(t.client.send("raw text"), false);
  assert.equal(t.client.buffer.length, 2);
  t.clock.advance(100);
  await settle();
  const next = t.Socket.last;
  next.accept();
  assert.deepEqual(next.ops(), ["hello"]); // nothing before the server says whether it resumed
  next.deliver({ $ws: "resumed", id: "s", token: "s-t2", seq: 0, replay: 0, window: 120, rooms: ["a"] });
  assert.deepEqual(next.ops(), ["hello", "subscribe", "publish"]);
  assert.deepEqual(next.controls[1], { $ws: "subscribe", channel: "b", presence: false });
  assert.equal(next.sent.at(-1), "raw text");
  next.deliver({ $ws: "published", channel: "a", id: 42 });
  assert.deepEqual(await queued, { $ws: "published", channel: "a", id: 42 });
  assert.equal(t.client.session.token, "s-t2");
});

test("refusals reject the oldest request of their kind; requests the server skipped were dropped", async () => {
  const t = make();
  const ws = await connected(t);
  const refused = t.client.subscribe("secret");
  ws.deliver({ $ws: "error", code: "forbidden", message: "members only", ref: "subscribe" });
  await assert.rejects(refused, (e) => e.code === "forbidden" && e.message === "members only" && e.ref === "subscribe");
  assert.equal(t.client.subscriptions.has("secret"), false);
  const lost = t.client.publish("c", 1);
  const kept = t.client.publish("c", 2);
  ws.deliver({ $ws: "published", channel: "c", id: "p2" }); // p1 was dropped by a rate limit
  await assert.rejects(lost, (e) => e.code === "dropped");
  assert.equal((await kept).id, "p2");
  assert.throws(() => t.client.publish("c", new Uint8Array(2)), TypeError);
  assert.throws(() => t.client.send('{"$ws":"ping"}'), TypeError);
});

test("the send queue while away: bounded, with a policy", async () => {
  const t = make({ maxBuffered: 2 });
  const a = t.client.publish("c", "a");
  t.client.publish("c", "b");
  const c = t.client.publish("c", "c");
  await assert.rejects(c, (e) => e.code === "buffer_full");
  assert.deepEqual(t.events.filter(([k]) => k === "error").map(([, m]) => m.code), ["buffer_full"]);
  assert.throws(() => t.client.send("x"), (e) => e.code === "buffer_full");
  t.client.bufferPolicy = "drop_oldest";
  t.client.send("y");
  await assert.rejects(a, (e) => e.code === "buffer_full");
  assert.equal(t.client.buffer.length, 2);
  const ws = await connected(t);
  assert.deepEqual(ws.sent.slice(1).map((f) => (f.startsWith("{") ? JSON.parse(f).data : f)), ["b", "y"]);
  t.client.close();
  assert.deepEqual(ws.closedWith, [1000, ""]);
});

test("4401 fetches a fresh ticket and reconnects; without a way to refresh it stops", async () => {
  let issued = 0;
  const t = make({ ticket: async () => `t${++issued}`, backoff: { base: 0.1 } });
  const ws = await connected(t);
  assert.equal(ws.url.searchParams.get("ticket"), "t1");
  ws.drop(4401, "credentials expired");
  t.clock.advance(100);
  await settle();
  assert.equal(t.Socket.last.url.searchParams.get("ticket"), "t2");

  const fixed = make({ ticket: "only" });
  const ws2 = await connected(fixed);
  ws2.drop(4401, "credentials expired");
  assert.equal(fixed.client.state, "closed");
  assert.deepEqual(fixed.kinds("reconnecting"), []);
});

test("terminal codes stop, 1012 comes back at once, giveup after maxAttempts", async () => {
  const t = make();
  const pending = t.client.subscribe("x");
  (await connected(t)).drop(4409, "session resumed on another connection");
  assert.equal(t.client.state, "closed");
  await assert.rejects(pending, (e) => e.code === "closed");

  const r = make({ backoff: { restartJitter: 0.2, maxAttempts: 1 } });
  (await connected(r)).drop(1012);
  assert.deepEqual(r.events.find(([k]) => k === "reconnecting")[1], { attempt: 1, delay: 0.2, code: 1012, reason: "" });
  r.clock.advance(200);
  await settle();
  r.Socket.last.drop(1006);
  assert.deepEqual(r.kinds("giveup", "state").slice(-2), ["state", "giveup"]);
  assert.equal(r.client.state, "closed");
});

test("a list of URLs: each attempt after a failure goes to the next one", async () => {
  const t = make({ backoff: { base: 0.01 } }, ["ws://a.test/ws", "ws://b.test/ws"]);
  await connected(t);
  t.Socket.last.drop(1006);
  t.clock.advance(10);
  await settle();
  t.Socket.last.drop(1006);
  t.clock.advance(20);
  await settle();
  assert.deepEqual(t.Socket.made.map((s) => s.url.host), ["a.test", "b.test", "a.test"]);
});

test("persist: the session is kept in storage for the next page, which resumes it; close(1000) forgets it", async () => {
  const storage = new MemoryStorage();
  const t = make({ persist: { storage, key: "k" } });
  const ws = await connected(t, "s");
  ws.deliver("one");
  ws.deliver("two");
  t.client.saveSession(); // what pagehide does
  const reloaded = make({ persist: { storage, key: "k" } });
  assert.equal(storage.getItem("k"), null); // taken: a duplicated tab would not find it
  const again = await connected(reloaded);
  assert.equal(again.url.searchParams.get("ws_resume"), "s-t1");
  assert.equal(again.url.searchParams.get("ws_seq"), "2");
  reloaded.client.close();
  reloaded.client.saveSession();
  assert.equal(storage.getItem("k"), null);
});

test("no resume answer by welcome (a server without sessions): resume_failed 'unsupported', then restore", async () => {
  const t = make();
  t.client.subscribe("c");
  const ws = await connected(t, "s");
  ws.drop(1006);
  t.clock.advance(1000);
  await settle();
  const next = t.Socket.last;
  next.accept();
  next.deliver({ $ws: "welcome", v: 1, features: {} });
  assert.deepEqual(t.events.find(([k]) => k === "resume_failed")[1].code, "unsupported");
  assert.deepEqual(next.ops(), ["hello", "subscribe"]);
});

test("a handshake that never completes is given up after openTimeout", async () => {
  const t = make({ openTimeout: 2, backoff: { base: 0.1 } });
  t.client.connect();
  await settle();
  const stuck = t.Socket.last;
  t.clock.advance(2000);
  assert.equal(stuck.terminated, true);
  assert.deepEqual(t.events.find(([k]) => k === "close")[1], { code: 1006, reason: "opening handshake timed out" });
  assert.equal(t.client.state, "reconnecting");
});
