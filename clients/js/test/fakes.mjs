// Test doubles: a clock whose time moves only when a test says so, and a WebSocket the test plays the server of.

export class FakeClock {
  constructor() {
    this.time = 1_000_000;
    this.timers = new Map();
    this.nextId = 1;
  }
  now() {
    return this.time;
  }
  setTimeout(callback, ms) {
    const id = this.nextId++;
    this.timers.set(id, { at: this.time + ms, callback });
    return id;
  }
  clearTimeout(id) {
    this.timers.delete(id);
  }
  /** Move time forward by `ms`, running every timer that falls due on the way, in order. */
  advance(ms) {
    const end = this.time + ms;
    for (;;) {
      let next = null;
      for (const [id, timer] of this.timers) {
        if (timer.at <= end && (next === null || timer.at < next[1].at)) next = [id, timer];
      }
      if (next === null) break;
      this.timers.delete(next[0]);
      this.time = Math.max(this.time, next[1].at);
      next[1].callback();
    }
    this.time = end;
  }
}

/** A WebSocket class whose instances the test drives; `FakeSocket.made` lists them in order. */
export function fakeWebSocket() {
  class FakeSocket {
    static made = [];
    constructor(url, protocols) {
      this.url = new URL(url);
      this.protocols = protocols;
      this.readyState = 0;
      this.protocol = "";
      this.binaryType = "blob";
      this.sent = [];
      this.closedWith = null;
      this.terminated = false;
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      FakeSocket.made.push(this);
    }
    static get last() {
      return FakeSocket.made[FakeSocket.made.length - 1];
    }
    send(data) {
      if (this.readyState !== 1) throw new Error("not open");
      this.sent.push(data);
    }
    close(code, reason) {
      this.closedWith = [code, reason];
      this.readyState = 2;
    }
    terminate() {
      this.terminated = true;
      this.readyState = 3;
    }
    // -- the server's side --
    accept(protocol = "") {
      this.readyState = 1;
      this.protocol = protocol;
      this.onopen?.({});
    }
    deliver(data) {
      this.onmessage?.({ data: typeof data === "object" && !(data instanceof ArrayBuffer) ? JSON.stringify(data) : data });
    }
    drop(code = 1006, reason = "") {
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }
    /** The control messages the client sent, decoded. */
    get controls() {
      return this.sent.filter((f) => typeof f === "string" && f.startsWith('{"$ws"')).map((f) => JSON.parse(f));
    }
    ops() {
      return this.controls.map((m) => m.$ws);
    }
  }
  return FakeSocket;
}

/** Let promise callbacks (the client's async steps) run. */
export async function settle() {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

export class MemoryStorage {
  constructor() {
    this.map = new Map();
  }
  getItem(key) {
    return this.map.has(key) ? this.map.get(key) : null;
  }
  setItem(key, value) {
    this.map.set(key, String(value));
  }
  removeItem(key) {
    this.map.delete(key);
  }
}
