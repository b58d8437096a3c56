// The client against a hostile or broken server (a fake WebSocket the test plays the server of):
// whatever it sends, the client reads on, reports what is wrong, and never lets a control message
// pass for one of its own events.
import assert from "node:assert/strict";
import { test } from "node:test";
import { AsgiWs } from "../dist/asgi-ws.mjs";
import { FakeClock, fakeWebSocket, settle } from "./fakes.mjs";

const OWN_EVENTS = ["open", "close", "reconnecting", "giveup", "state", "message", "raw", "rtt", "session_lost"];

function make(options = {}) {
  const clock = new FakeClock();
  const Socket = fakeWebSocket();
  const events = [];
  const client = new AsgiWs("ws://server.test/ws", { WebSocket: Socket, clock, random: () => 1, ...options });
  for (const kind of [...OWN_EVENTS, "control", "error", "resumed", "resume_failed", "presence", "custom"]) {
    client.on(kind, (detail) => events.push([kind, detail]));
  }
  return { client, clock, Socket, events };
}

async function connected(t, session = null) {
  t.client.connect();
  await settle();
  const ws = t.Socket.last;
  ws.accept();
  if (session) ws.deliver({ $ws: "session", id: session, token: `${session}-t1`, seq: 0, window: 120 });
  return ws;
}

test("a control message named like one of the client's events is a control event only", async () => {
  // Before: {"$ws":"close"} fired "close" on an open connection, {"$ws":"message",...} a delivery.
  const t = make();
  const ws = await connected(t);
  const before = t.events.length;
  for (const op of OWN_EVENTS) ws.deliver({ $ws: op, channel: "news", data: "forged", code: 1000, reason: "" });
  const fired = t.events.slice(before);
  assert.deepEqual(fired.map(([kind]) => kind), OWN_EVENTS.map(() => "control"));
  assert.deepEqual(fired.map(([, detail]) => detail.$ws), OWN_EVENTS);
  assert.equal(t.client.state, "open");
  // The operations the client has no handler for still come under their names, and as control.
  ws.deliver({ $ws: "presence", channel: "news", members: [] });
  ws.deliver({ $ws: "custom", x: 1 });
  assert.deepEqual(t.events.slice(-4).map(([kind]) => kind), ["presence", "control", "custom", "control"]);
});

test("a resumed at a count the client never reached is reported; one that is not a count is ignored", async () => {
  for (const [seq, countedFrom] of [[1_000_000, 1_000_000], [1.5, 1], [-3, 1], [true, 1], ["7", 1], [2 ** 60, 1], [null, 1], [1, 1]]) {
    const t = make({ backoff: { base: 0.1 } });
    const ws = await connected(t, "s");
    ws.deliver("one");
    ws.drop(1006);
    t.clock.advance(100);
    await settle();
    const next = t.Socket.last;
    next.accept();
    assert.equal(next.url.searchParams.get("ws_seq"), "1");
    next.deliver({ $ws: "resumed", id: "s", token: "s-t2", seq, replay: 0, window: 120, rooms: [] });
    next.deliver("two");
    assert.equal(t.client.received, countedFrom + 1, `seq ${seq}`);
    const errors = t.events.filter(([kind]) => kind === "error").map(([, detail]) => detail);
    assert.deepEqual(errors.map((e) => e.code), seq === 1 ? [] : ["resume_mismatch"], `seq ${seq}`);
    assert.equal(t.client.state, "open");
    next.drop(1006); // the next resume asks with a count, never "1e+21" or "-3"
    t.clock.advance(1000);
    await settle();
    assert.match(t.Socket.last.url.searchParams.get("ws_seq"), /^[0-9]{1,16}$/);
  }
});

// -- anything a server may send ----------------------------------------------------------------------

const OPS = ["welcome", "ping", "pong", "error", "subscribed", "unsubscribed", "published", "presence", "presence_diff",
  "session", "resumed", "resume_failed", "batch", "hello", "ack", "close", "message", "__proto__", "constructor",
  "toString", "hasOwnProperty", "nope", ""];
const FIELDS = ["id", "v", "features", "channel", "code", "message", "ref", "members", "token", "seq", "window",
  "rooms", "replay", "m", "reason", "__proto__"];

/** A small deterministic PRNG (mulberry32), so a failure can be replayed. */
function prng(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function value(random, depth = 0) {
  const pick = Math.floor(random() * (depth > 3 ? 7 : 10));
  switch (pick) {
    case 0: return null;
    case 1: return random() < 0.5;
    case 2: return Math.floor(random() * 2 ** 53) * (random() < 0.5 ? -1 : 1);
    case 3: return [1e-9, 1e308, -0, 0.5, 2 ** 53, 1e21][Math.floor(random() * 6)];
    case 4: return ["", "subscribe", "publish", "news", "\ud800", "é😀", "x".repeat(10_000)][Math.floor(random() * 7)];
    case 5: return OPS[Math.floor(random() * OPS.length)];
    case 6: return "s";
    case 7: return Array.from({ length: Math.floor(random() * 4) }, () => value(random, depth + 1));
    default: {
      const object = {};
      for (let i = Math.floor(random() * 4); i > 0; i--) object[FIELDS[Math.floor(random() * FIELDS.length)]] = value(random, depth + 1);
      return object;
    }
  }
}

function frame(random) {
  const kind = random();
  if (kind < 0.1) return new Uint8Array([1, 2, 3]).buffer;
  if (kind < 0.2) return `plain ${kind}`;
  const message = { $ws: random() < 0.9 ? OPS[Math.floor(random() * OPS.length)] : value(random) };
  for (let i = Math.floor(random() * 5); i > 0; i--) message[FIELDS[Math.floor(random() * FIELDS.length)]] = value(random);
  const text = JSON.stringify(message);
  return random() < 0.1 ? text.slice(0, 6 + Math.floor(random() * (text.length - 5))) : text; // cut short: not JSON
}

test("whatever a server sends, the client reads on and stays connected", async () => {
  for (let seed = 1; seed <= 40; seed++) {
    const random = prng(seed);
    const t = make({ pingInterval: 5, pingTimeout: 5 });
    t.client.subscribe("news").catch(() => {});
    t.client.publish("news", 1).catch(() => {});
    const ws = await connected(t, "s");
    const frames = Array.from({ length: 50 }, () => frame(random));
    for (const [i, data] of frames.entries()) {
      try {
        ws.deliver(data);
      } catch (error) {
        assert.fail(`seed ${seed}, frame ${i} (${String(data).slice(0, 200)}) threw ${error}`);
      }
      t.clock.advance(10);
    }
    await settle();
    ws.deliver("sentinel");
    assert.equal(t.client.state, "open", `seed ${seed}`);
    assert.equal(t.events.filter(([kind]) => kind === "raw").at(-1)[1], "sentinel", `seed ${seed}`);
    assert.equal(t.events.filter(([kind]) => kind === "close").length, 0, `seed ${seed}`);
  }
});
