/*!
 * asgi-ws 0.1.0: the client for asgi_ws endpoints (docs/client.md, docs/protocol.md). MIT License.
 * Generated from clients/js/src by `npm run build`: do not edit; edit the TypeScript and build.
 */
"use strict";
(() => {
  // src/backoff.ts
  var DEFAULT_BACKOFF = Object.freeze({
    base: 0.5,
    cap: 30,
    maxAttempts: Infinity,
    resetAfter: 10,
    restartJitter: 0.25
  });
  var RESTART_CODES = /* @__PURE__ */ new Set([1001, 1012]);
  var STOP_CODES = /* @__PURE__ */ new Set([1003, 1007, 4403, 4409]);
  var CREDENTIALS_EXPIRED = 4401;
  var SESSION_LOST = 4404;
  var HEARTBEAT_TIMEOUT = 4408;
  function ceiling(backoff, attempt) {
    return Math.min(backoff.cap, backoff.base * 2 ** Math.min(attempt, 64));
  }
  var Attempts = class {
    constructor(backoff, random = () => Math.random()) {
      this.backoff = backoff;
      this.random = random;
      /** Reconnection attempts made since the last stable connection. */
      this.attempt = 0;
      this.upSince = null;
    }
    /** A connection opened at `now` (ms). */
    connected(now) {
      this.upSince = now;
    }
    /**
     * After a failed attempt or a drop at `now` (ms): seconds to wait before the next attempt,
     * or null to give up. A connection that stayed up `resetAfter` seconds resets the count
     * first; after 1001/1012 the first attempt in a row waits at most `restartJitter`.
     */
    nextDelay(now, code) {
      if (this.upSince !== null && now - this.upSince >= this.backoff.resetAfter * 1e3) this.attempt = 0;
      this.upSince = null;
      if (this.attempt >= this.backoff.maxAttempts) return null;
      const top = code !== void 0 && RESTART_CODES.has(code) && this.attempt === 0 ? this.backoff.restartJitter : ceiling(this.backoff, this.attempt);
      const delay = this.random() * top;
      this.attempt += 1;
      return delay;
    }
  };
  function closeAction(code, options) {
    if (code === 1e3) return "end";
    if (STOP_CODES.has(code) || new Set(options.stopCodes ?? []).has(code)) return "stop";
    if (code === CREDENTIALS_EXPIRED) return options.canRefresh ? "reconnect" : "stop";
    return "reconnect";
  }
  function heartbeatStep(now, state) {
    if (state.pingSentAt !== null && state.lastReceived < state.pingSentAt) {
      return now - state.pingSentAt >= state.timeout ? "dead" : "wait";
    }
    return now - state.lastReceived >= state.interval ? "ping" : "wait";
  }

  // src/errors.ts
  var AsgiWsError = class extends Error {
    constructor(code, message, ref) {
      super(message);
      this.code = code;
      this.ref = ref;
      this.name = "AsgiWsError";
    }
  };

  // src/events.ts
  var Emitter = class {
    constructor() {
      this.handlers = /* @__PURE__ */ new Map();
    }
    on(event, handler) {
      const list = this.handlers.get(event);
      if (list) list.push(handler);
      else this.handlers.set(event, [handler]);
    }
    off(event, handler) {
      const list = this.handlers.get(event);
      const index = list ? list.indexOf(handler) : -1;
      if (list && index >= 0) list.splice(index, 1);
    }
    emit(event, detail) {
      for (const handler of [...this.handlers.get(event) ?? []]) {
        try {
          handler(detail);
        } catch (error) {
          console.error(`asgi_ws: a "${event}" handler failed`, error);
        }
      }
    }
  };

  // src/protocol.ts
  var PREFIX = '{"$ws"';
  var VERSION = 1;
  var BATCH_PREFIX = '{"$ws":"batch","m":[';
  function isControl(data) {
    return typeof data === "string" && data.startsWith(PREFIX);
  }
  function encode(op, fields) {
    const message = { $ws: op };
    for (const key in fields) if (key !== "$ws") message[key] = fields[key];
    return JSON.stringify(message);
  }
  function decode(text) {
    if (!isControl(text)) return null;
    let value;
    try {
      value = JSON.parse(text);
    } catch {
      return null;
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) return null;
    const op = value.$ws;
    return typeof op === "string" && op.length > 0 ? value : null;
  }
  function unpackBatch(message) {
    const texts = message.m;
    if (!Array.isArray(texts)) return null;
    for (const text of texts) if (typeof text !== "string") return null;
    return texts;
  }
  function parseDelivery(data) {
    if (typeof data !== "string" || !data.startsWith('{"channel"')) return null;
    try {
      const value = JSON.parse(data);
      if (value !== null && typeof value === "object" && typeof value.channel === "string") {
        return value;
      }
    } catch {
    }
    return null;
  }
  function isBinary(data) {
    if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return true;
    const blob = globalThis.Blob;
    return typeof blob === "function" && data instanceof blob;
  }

  // src/queue.ts
  var SendQueue = class {
    constructor(max, policy = "reject") {
      this.max = max;
      this.policy = policy;
      this.items = [];
      if (!(max >= 0)) throw new RangeError("asgi_ws: maxBuffered must be >= 0");
      if (policy !== "reject" && policy !== "drop_oldest") throw new RangeError(`asgi_ws: unknown bufferPolicy ${policy}`);
    }
    get length() {
      return this.items.length;
    }
    push(item) {
      if (this.items.length < this.max) {
        this.items.push(item);
        return { accepted: true, dropped: null };
      }
      if (this.policy === "drop_oldest" && this.items.length > 0) {
        const dropped = this.items.shift();
        this.items.push(item);
        return { accepted: true, dropped };
      }
      return { accepted: false, dropped: null };
    }
    shift() {
      return this.items.shift();
    }
    /** Empty the queue; returns what it held, oldest first. */
    clear() {
      return this.items.splice(0);
    }
  };

  // src/resume.ts
  var ACK_EVERY = 100;
  function isCount(value) {
    return Number.isSafeInteger(value) && value >= 0;
  }
  function resumeMismatch(message, received) {
    const seq = message.seq;
    if (!isCount(seq)) return `ignored the seq of a resumed message, which is not a count: ${String(JSON.stringify(seq)).slice(0, 40)}`;
    return seq === received ? null : `resumed at seq ${seq} but the client had received ${received} frames`;
  }
  var ResumeState = class {
    constructor(enabled = true) {
      this.enabled = enabled;
      /** Id of the current session, once the server created one. */
      this.id = null;
      /** The newest resume token: the only one kept (each serves one resume). */
      this.token = null;
      /** Seconds the server keeps a dropped session, as it announced. */
      this.window = null;
      /** Data frames received in this session (the seq of the last one). */
      this.received = 0;
      /** The count last acknowledged to the server. */
      this.acked = 0;
      /** True from a connection that asked to resume until the server's answer. */
      this.pending = false;
    }
    /** Whether the server gave this client a session (so acks are worth sending). */
    get active() {
      return this.token !== null;
    }
    /** The handshake's query parameters for the next connection; also starts that connection's bookkeeping. */
    query() {
      if (!this.enabled) return {};
      if (this.token === null) {
        this.pending = false;
        this.received = this.acked = 0;
        return { ws_resume: "new" };
      }
      this.pending = true;
      return { ws_resume: this.token, ws_seq: String(this.received) };
    }
    /** A data frame arrived: its sequence number in the session. */
    count() {
      this.received += 1;
      return this.received;
    }
    /** `session`: a new session, or a fresh token for the current one. Returns whether it is a new session. */
    onSession(message) {
      const { id, token } = message;
      if (typeof id !== "string" || typeof token !== "string") return false;
      const fresh = id !== this.id;
      if (fresh) this.received = this.acked = 0;
      this.id = id;
      this.token = token;
      this.setWindow(message);
      return fresh;
    }
    /** `resumed`: keep the new token, take the server's count; returns the rooms restored with the session. */
    onResumed(message) {
      this.pending = false;
      if (typeof message.token === "string") this.token = message.token;
      if (typeof message.id === "string") this.id = message.id;
      if (isCount(message.seq)) {
        this.received = message.seq;
        this.acked = Math.min(this.acked, message.seq);
      }
      this.setWindow(message);
      const rooms = message.rooms;
      return Array.isArray(rooms) ? rooms.filter((room) => typeof room === "string") : [];
    }
    /** `resume_failed` (or no answer in time): the session is gone. Returns whether this connection had asked to resume. */
    onResumeFailed() {
      const wasResuming = this.pending;
      this.reset();
      return wasResuming;
    }
    /** The connection closed with `code`; true when that lost the session (4404: the server's store lost it). */
    onClose(code) {
      if (code !== SESSION_LOST || this.token === null) return false;
      this.reset();
      return true;
    }
    /** Forget the session: the next connection asks for a new one. */
    reset() {
      this.id = this.token = null;
      this.pending = false;
      this.received = this.acked = 0;
    }
    snapshot() {
      return this.id !== null && this.token !== null ? { id: this.id, token: this.token, received: this.received } : null;
    }
    restore(snapshot) {
      this.id = snapshot.id;
      this.token = snapshot.token;
      this.received = this.acked = snapshot.received;
    }
    setWindow(message) {
      if (typeof message.window === "number") this.window = message.window;
    }
  };
  var SessionPersistence = class {
    constructor(storage, key) {
      this.storage = storage;
      this.key = key;
    }
    /** The stored session, removed from the storage (null when there is none or it is unreadable). */
    take() {
      try {
        const text = this.storage.getItem(this.key);
        if (text === null) return null;
        this.storage.removeItem(this.key);
        const value = JSON.parse(text);
        if (value && typeof value.id === "string" && typeof value.token === "string" && Number.isSafeInteger(value.received) && value.received >= 0) {
          return { id: value.id, token: value.token, received: value.received };
        }
      } catch {
      }
      return null;
    }
    save(snapshot) {
      try {
        if (snapshot === null) this.storage.removeItem(this.key);
        else this.storage.setItem(this.key, JSON.stringify(snapshot));
      } catch {
      }
    }
  };

  // src/websocket.ts
  var OPEN = 1;
  var fallback = null;
  async function resolveWebSocket(explicit) {
    if (explicit) return explicit;
    const native = globalThis.WebSocket;
    if (typeof native === "function") return native;
    if (fallback !== null) {
      try {
        return await fallback();
      } catch {
      }
    }
    throw new AsgiWsError(
      "no_websocket",
      "asgi_ws: no WebSocket here: on Node.js 20 and 21 install the ws package (npm install ws), run with --experimental-websocket, or pass options.WebSocket"
    );
  }

  // src/client.ts
  var DEFAULT_CLOCK = {
    now: () => Date.now(),
    setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
    clearTimeout: (handle) => globalThis.clearTimeout(handle)
  };
  var noop = () => {
  };
  var OWN_EVENTS = /* @__PURE__ */ new Set([
    "open",
    "close",
    "reconnecting",
    "giveup",
    "state",
    "message",
    "raw",
    "rtt",
    "session_lost",
    "control",
    "error",
    "welcome",
    "session",
    "resumed",
    "resume_failed",
    "subscribed",
    "unsubscribed",
    "published"
  ]);
  var _AsgiWs = class _AsgiWs {
    constructor(url, options = {}) {
      /** The current socket (null between connections). */
      this.ws = null;
      this.state = "idle";
      /** True after close() or a close that is not retried, until connect(). */
      this.stopped = false;
      /** Seconds: the round trip of the client's last answered ping. */
      this.rtt = null;
      /** What the server announced in its last `welcome`. */
      this.features = {};
      /** Channel -> its subscribe request: restored after every reconnection that did not resume them. */
      this.subscriptions = /* @__PURE__ */ new Map();
      this.events = new Emitter();
      this.persistence = null;
      this.waiters = /* @__PURE__ */ new Map();
      this.inflight = { subscribe: [], unsubscribe: [], publish: [] };
      this.generation = 0;
      // bumped by every attempt and by close(): a stale attempt stops where it is
      this.urlIndex = 0;
      this.publishSeq = 0;
      this.ready = false;
      // open, resume settled, subscriptions restored, queue flushed
      this.retryTimer = null;
      this.tickTimer = null;
      this.openTimer = null;
      this.openedAt = 0;
      this.lastReceived = 0;
      this.lastAckAt = 0;
      this.pingId = 0;
      this.pingSentAt = null;
      this.url = url;
      this.protocols = options.protocols;
      this.ticket = options.ticket;
      this.ticketParam = options.ticketParam ?? "ticket";
      this.backoff = { ...DEFAULT_BACKOFF, ...options.backoff };
      this.pingInterval = options.pingInterval ?? 15;
      this.pingTimeout = options.pingTimeout ?? 10;
      this.openTimeout = options.openTimeout ?? 10;
      this.batch = options.batch ?? true;
      this.stopCodes = new Set(options.stopCodes ?? []);
      this.clock = options.clock ?? DEFAULT_CLOCK;
      this.WebSocketClass = options.WebSocket;
      this.resumeState = new ResumeState(options.resume ?? true);
      this.attempts = new Attempts(this.backoff, options.random ?? (() => Math.random()));
      this.queue = new SendQueue(options.maxBuffered ?? 100, options.bufferPolicy ?? "reject");
      if (options.persist) {
        const persist = typeof options.persist === "object" ? options.persist : {};
        const storage = persist.storage ?? defaultStorage();
        if (storage) {
          const key = persist.key ?? `asgi-ws:session:${typeof url === "string" ? url : ""}`;
          this.persistence = new SessionPersistence(storage, key);
          const snapshot = this.persistence.take();
          if (snapshot && this.resumeState.enabled) this.resumeState.restore(snapshot);
          const target = globalThis;
          target.addEventListener?.("pagehide", () => this.saveSession());
          target.addEventListener?.("pageshow", (event) => {
            if (event.persisted) this.persistence?.take();
          });
        }
      }
    }
    on(event, handler) {
      this.events.on(event, handler);
      return this;
    }
    off(event, handler) {
      this.events.off(event, handler);
      return this;
    }
    emit(event, detail) {
      this.events.emit(event, detail);
    }
    // -- state -----------------------------------------------------------------------------
    /** The resumable session, `{id, token}`, once the server gave one. */
    get session() {
      const { id, token } = this.resumeState;
      return id !== null && token !== null ? { id, token } : null;
    }
    /** Data frames received in the current session (the count sent when resuming). */
    get received() {
      return this.resumeState.received;
    }
    /** Ask for a resumable session on the next connections. */
    get resume() {
      return this.resumeState.enabled;
    }
    set resume(enabled) {
      this.resumeState.enabled = enabled;
    }
    /** Reconnection attempts in a row since the last stable connection. */
    get attempt() {
      return this.attempts.attempt;
    }
    /** What waits for the next connection, oldest first. */
    get buffer() {
      return this.queue.items;
    }
    get maxBuffered() {
      return this.queue.max;
    }
    set maxBuffered(max) {
      this.queue.max = max;
    }
    get bufferPolicy() {
      return this.queue.policy;
    }
    set bufferPolicy(policy) {
      this.queue.policy = policy;
    }
    /** Write the session to the `persist` storage now (done by itself on `pagehide`). */
    saveSession() {
      this.persistence?.save(this.stopped && !this.resumeState.active ? null : this.resumeState.snapshot());
    }
    // -- connecting and closing ------------------------------------------------------------
    /** Connect; while `reconnecting`, try now instead of waiting for the backoff's delay. */
    connect() {
      this.stopped = false;
      if (this.state === "open" || this.state === "connecting") return this;
      this.clearTimer("retryTimer");
      void this.open();
      return this;
    }
    /**
     * Close (1000 by default) and stop reconnecting. A close with 1000 ends the session on the
     * server for good; queued messages are dropped (their publishes rejected with `closed`).
     */
    close(code = 1e3, reason = "") {
      this.stopped = true;
      this.generation += 1;
      this.clearTimer("retryTimer");
      this.clearTimer("openTimer");
      this.clearTimer("tickTimer");
      if (code === 1e3) {
        this.resumeState.reset();
        this.persistence?.save(null);
      }
      this.failAll(new AsgiWsError("closed", "asgi_ws: the client was closed"));
      const ws = this.ws;
      if (ws) {
        try {
          ws.close(code, reason);
        } catch {
        }
      }
      this.setState("closed");
    }
    // -- pub/sub and data --------------------------------------------------------------------
    /**
     * Subscribe to `channel`; resolves with the server's `subscribed` answer (with `members`
     * when `presence`), rejects with an AsgiWsError (`forbidden`, `too_many_subscriptions`...).
     * The subscription is kept and restored after every reconnection that did not resume it.
     */
    subscribe(channel, options = {}) {
      const fields = { channel, presence: !!options.presence };
      if (options.meta) fields.meta = options.meta;
      this.subscriptions.set(channel, fields);
      const answer = this.waitFor("subscribe", channel);
      if (this.writable()) this.request("subscribe", channel, fields);
      return answer;
    }
    /** Stop receiving `channel` and forget the subscription. */
    unsubscribe(channel) {
      this.subscriptions.delete(channel);
      if (!this.writable()) return settled({ $ws: "unsubscribed", channel });
      const answer = this.waitFor("unsubscribe", channel);
      this.request("unsubscribe", channel, { channel });
      return answer;
    }
    /**
     * Publish the JSON value `data` on `channel`. Resolves with the server's `published` answer;
     * rejects with an AsgiWsError: the server's refusal (`forbidden`, `too_large`), `interrupted`
     * (the connection dropped before the answer: the publish may have happened and is not re-sent),
     * `dropped` (the server's rate limit dropped it), `buffer_full`, `closed`. While disconnected
     * it waits in the queue. Bytes are refused (TypeError): JSON would mangle them; use send().
     */
    publish(channel, data, options) {
      if (isBinary(data)) {
        throw new TypeError("asgi_ws: publish() carries JSON, not bytes: use send() or publish them server-side");
      }
      const given = typeof options === "object" && options !== null ? options.id : options;
      const id = given ?? `p${++this.publishSeq}`;
      const answer = this.waitFor("publish", id);
      const frame = encode("publish", { channel, data, id });
      if (this.writable() && this.queue.length === 0) {
        this.write(frame, id);
      } else if (!this.enqueue({ frame, publishId: id })) {
        this.emit("error", { $ws: "error", code: "buffer_full", message: "publish dropped while disconnected" });
      }
      return answer;
    }
    /**
     * Send an application message as it is: text, or bytes as a binary frame. While not
     * connected it waits in the queue. Returns true when written now, false when queued.
     * Throws an AsgiWsError `buffer_full` when the queue refuses it, a TypeError for text
     * starting with `{"$ws"` (reserved for the control protocol).
     */
    send(data) {
      if (typeof data === "string" && data.startsWith(PREFIX)) {
        throw new TypeError('asgi_ws: messages starting with {"$ws" are reserved for the control protocol');
      }
      if (this.writable() && this.queue.length === 0) {
        this.write(data);
        return true;
      }
      if (!this.enqueue({ frame: data })) {
        throw new AsgiWsError("buffer_full", `asgi_ws: ${this.queue.max} messages already wait for a connection`);
      }
      return false;
    }
    /** Send the control message `op` as is (`presence`...); answers arrive as events named after their operation. */
    sendControl(op, fields = {}) {
      this.control(op, fields);
    }
    /**
     * Measure the round trip now: sends a ping unless one is unanswered; the pong sets `rtt`
     * and emits `rtt`. Unanswered within pingTimeout the connection is treated as dead (4408)
     * as for the heartbeat's own pings, unless pingInterval is 0. Returns whether a ping was sent.
     */
    ping() {
      if (this.state !== "open" || this.pingSentAt !== null) return false;
      this.pingId += 1;
      this.pingSentAt = this.clock.now();
      this.control("ping", { id: this.pingId });
      return true;
    }
    // -- one connection --------------------------------------------------------------------
    async open() {
      const generation = ++this.generation;
      this.setState("connecting");
      let url;
      let WebSocketClass;
      try {
        url = await this.target();
        WebSocketClass = await resolveWebSocket(this.WebSocketClass);
      } catch (error) {
        if (generation !== this.generation) return;
        if (error instanceof AsgiWsError) {
          this.stop();
          this.emit("giveup", { code: 0, reason: error.message });
          return;
        }
        this.reconnectLater({ code: 0, reason: `no URL: ${error}` });
        return;
      }
      if (generation !== this.generation) return;
      let ws;
      try {
        ws = this.protocols ? new WebSocketClass(url, this.protocols) : new WebSocketClass(url);
      } catch (error) {
        this.stop();
        this.emit("giveup", { code: 0, reason: `${error}` });
        return;
      }
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      ws.onerror = noop;
      ws.onopen = () => this.opened(ws);
      ws.onmessage = (event) => {
        if (this.ws === ws) this.receive(event.data);
      };
      ws.onclose = (event) => {
        if (this.ws === ws) this.closed(ws, event.code, event.reason);
      };
      this.openTimer = this.clock.setTimeout(() => {
        this.openTimer = null;
        if (this.ws === ws && this.state === "connecting") this.abandon(ws, 1006, "opening handshake timed out");
      }, this.openTimeout * 1e3);
    }
    /** The URL of the next attempt: its source, a fresh ticket, the resume parameters. */
    async target() {
      const source = this.url;
      let url;
      if (typeof source === "function") url = await source();
      else if (Array.isArray(source)) {
        const list = source;
        if (list.length === 0) throw new Error("the URL list is empty");
        url = list[this.urlIndex % list.length];
      } else url = source;
      const base = globalThis.location?.href;
      const absolute = new URL(String(url), base);
      if (absolute.protocol === "http:") absolute.protocol = "ws:";
      if (absolute.protocol === "https:") absolute.protocol = "wss:";
      if (this.ticket !== void 0) {
        const ticket = typeof this.ticket === "function" ? await this.ticket() : this.ticket;
        absolute.searchParams.set(this.ticketParam, String(ticket));
      }
      for (const [name, value] of Object.entries(this.resumeState.query())) absolute.searchParams.set(name, value);
      return absolute.href;
    }
    opened(ws) {
      if (this.ws !== ws) return;
      this.clearTimer("openTimer");
      const now = this.clock.now();
      this.attempts.connected(now);
      this.openedAt = this.lastReceived = this.lastAckAt = now;
      this.ready = false;
      this.pingSentAt = null;
      for (const op of Object.keys(this.inflight)) this.inflight[op].length = 0;
      this.setState("open");
      this.control("hello", this.batch ? { v: VERSION, batch: true } : { v: VERSION });
      if (!this.resumeState.pending) this.restore([]);
      this.tick();
      this.emit("open", { protocol: ws.protocol });
    }
    closed(ws, code, reason) {
      detach(ws);
      this.ws = null;
      this.ready = false;
      this.clearTimer("openTimer");
      this.clearTimer("tickTimer");
      for (const id of this.inflight.publish.splice(0)) {
        const error = new AsgiWsError("interrupted", "the connection dropped before the server confirmed the publish", "publish");
        this.settle("publish", id, error);
      }
      for (const channel of this.inflight.unsubscribe.splice(0)) {
        this.settle("unsubscribe", channel, { $ws: "unsubscribed", channel });
      }
      this.inflight.subscribe.length = 0;
      this.emit("close", { code, reason });
      if (this.resumeState.onClose(code)) this.emit("session_lost", { code, reason });
      if (this.stopped) {
        this.setState("closed");
        return;
      }
      const canRefresh = typeof this.ticket === "function" || typeof this.url === "function";
      if (closeAction(code, { canRefresh, stopCodes: this.stopCodes }) !== "reconnect") {
        this.stop();
        return;
      }
      this.reconnectLater({ code, reason });
    }
    /** Leave a socket that is dead or stuck (no close handshake to wait for), and go on as if it closed. */
    abandon(ws, code, reason) {
      detach(ws);
      try {
        if (typeof ws.terminate === "function") ws.terminate();
        else if (ws.readyState === OPEN) ws.close(code, reason);
        else ws.close();
      } catch {
      }
      this.closed(ws, code, reason);
    }
    reconnectLater(cause) {
      const delay = this.attempts.nextDelay(this.clock.now(), cause.code);
      if (delay === null) {
        this.stop();
        this.emit("giveup", cause);
        return;
      }
      this.urlIndex += 1;
      this.setState("reconnecting");
      this.emit("reconnecting", { attempt: this.attempts.attempt, delay, ...cause });
      this.retryTimer = this.clock.setTimeout(() => {
        this.retryTimer = null;
        void this.open();
      }, delay * 1e3);
    }
    /** The client stops for good (until connect()): what waits is rejected. */
    stop() {
      this.stopped = true;
      this.setState("closed");
      this.failAll(new AsgiWsError("closed", "asgi_ws: the client stopped"));
    }
    /** Reject every queued message and every request waiting for an answer. */
    failAll(error) {
      this.failQueue(error);
      for (const key of [...this.waiters.keys()]) this.rejectKey(key, error);
    }
    // -- receiving -----------------------------------------------------------------------------
    receive(data) {
      this.lastReceived = this.clock.now();
      if (!isControl(data)) {
        this.receiveData(data);
        return;
      }
      const message = decode(data);
      if (message === null) return;
      const table = _AsgiWs.CONTROL;
      const handler = Object.prototype.hasOwnProperty.call(table, message.$ws) ? table[message.$ws] : null;
      if (handler) handler(this, message);
      else {
        if (!OWN_EVENTS.has(message.$ws)) this.emit(message.$ws, message);
        this.emit("control", message);
      }
    }
    /** A data frame, or a message of a batch frame: counted for resumption, then handed to the application. */
    receiveData(data) {
      const seq = this.resumeState.count();
      if (this.resumeState.active && seq - this.resumeState.acked >= ACK_EVERY) this.ack();
      const delivery = parseDelivery(data);
      if (delivery) this.emit("message", delivery);
      else this.emit("raw", data);
    }
    /** Subscribe again to what the server did not restore, send what waits, then become ready. Once per connection. */
    restore(restoredRooms) {
      if (this.ready || this.state !== "open") return;
      this.ready = true;
      const restored = new Set(restoredRooms);
      for (const [channel, fields] of this.subscriptions) {
        if (restored.has(channel)) this.settle("subscribe", channel, { $ws: "subscribed", channel, restored: true });
        else this.request("subscribe", channel, fields);
      }
      for (const item of this.queue.clear()) this.write(item.frame, item.publishId);
    }
    ack() {
      const state = this.resumeState;
      if (!state.active || state.received === state.acked) return;
      state.acked = state.received;
      this.lastAckAt = this.clock.now();
      this.control("ack", { seq: state.received });
    }
    /** Per connection, every ≤ 1 s: acks, the deadline of a resume answer, the heartbeat. */
    tick() {
      const ws = this.ws;
      if (!ws || this.state !== "open") return;
      const period = this.pingInterval > 0 ? Math.min(1e3, this.pingInterval * 500, this.pingTimeout * 500) : 1e3;
      this.tickTimer = this.clock.setTimeout(() => this.tick(), Math.max(50, period));
      const now = this.clock.now();
      if (now - this.lastAckAt >= 1e3) this.ack();
      if (this.resumeState.pending && now - this.openedAt >= this.openTimeout * 1e3) {
        this.resumeFailed({ $ws: "resume_failed", code: "unsupported", reason: "no answer to the resume request" });
      }
      if (!(this.pingInterval > 0)) return;
      const step = heartbeatStep(now, {
        lastReceived: this.lastReceived,
        pingSentAt: this.pingSentAt,
        interval: this.pingInterval * 1e3,
        timeout: this.pingTimeout * 1e3
      });
      if (step === "dead") {
        this.abandon(ws, HEARTBEAT_TIMEOUT, "heartbeat timeout (client)");
      } else if (step === "ping") {
        this.pingSentAt = null;
        this.ping();
      }
    }
    resumeFailed(message) {
      this.resumeState.onResumeFailed();
      this.emit("resume_failed", message);
      this.restore([]);
    }
    // -- sending -------------------------------------------------------------------------------
    writable() {
      return this.ws !== null && this.state === "open" && this.ready && this.ws.readyState === OPEN;
    }
    write(frame, publishId) {
      if (publishId !== void 0) this.inflight.publish.push(publishId);
      this.ws.send(frame);
    }
    control(op, fields = {}) {
      const ws = this.ws;
      if (ws && ws.readyState === OPEN) ws.send(encode(op, fields));
    }
    request(op, key, fields) {
      this.inflight[op].push(key);
      this.control(op, fields);
    }
    /** Queue a message for the next connection; false when the queue refused it. */
    enqueue(item) {
      const { accepted, dropped } = this.queue.push(item);
      if (dropped) this.refuseQueued(dropped, "dropped from the send queue to make room (drop_oldest)");
      if (!accepted) this.refuseQueued(item, `${this.queue.max} messages already wait for a connection`);
      return accepted;
    }
    refuseQueued(item, why) {
      if (item.publishId !== void 0) this.settle("publish", item.publishId, new AsgiWsError("buffer_full", why, "publish"));
    }
    failQueue(error) {
      for (const item of this.queue.clear()) {
        if (item.publishId !== void 0) this.settle("publish", item.publishId, error);
      }
    }
    // -- requests and their answers ----------------------------------------------------------
    waitFor(op, key) {
      const promise = new Promise((resolve, reject) => {
        const id = waiterKey(op, key);
        const list = this.waiters.get(id);
        const waiter = { resolve, reject };
        if (list) list.push(waiter);
        else this.waiters.set(id, [waiter]);
      });
      promise.catch(noop);
      return promise;
    }
    settle(op, key, result) {
      const id = waiterKey(op, key);
      if (result instanceof AsgiWsError) this.rejectKey(id, result);
      else {
        const list = this.waiters.get(id);
        this.waiters.delete(id);
        for (const waiter of list ?? []) waiter.resolve(result);
      }
    }
    rejectKey(id, error) {
      const list = this.waiters.get(id);
      this.waiters.delete(id);
      for (const waiter of list ?? []) waiter.reject(error);
    }
    /**
     * The server answered `op` for `key`. It answers a connection's requests in order, so the
     * requests of that kind sent before this one and still unanswered were dropped (rate limit).
     */
    answered(op, key, message) {
      if (typeof key !== "string" && typeof key !== "number") return;
      const inflight = this.inflight[op];
      const index = inflight.indexOf(key);
      if (index >= 0) {
        const skipped = inflight.splice(0, index + 1).slice(0, -1);
        for (const lost of skipped) {
          if (op === "subscribe") this.subscriptions.delete(lost);
          this.settle(op, lost, new AsgiWsError("dropped", `the server dropped this ${op} (rate limit)`, op));
        }
      }
      this.settle(op, key, message);
    }
    refused(message) {
      const ref = message.ref;
      if (ref !== "subscribe" && ref !== "unsubscribe" && ref !== "publish") return;
      const key = this.inflight[ref].shift();
      if (key === void 0) return;
      if (ref === "subscribe") this.subscriptions.delete(key);
      this.settle(ref, key, new AsgiWsError(String(message.code), String(message.message ?? ""), ref));
    }
    // -- helpers -----------------------------------------------------------------------------
    setState(state) {
      if (this.state === state) return;
      this.state = state;
      this.emit("state", state);
    }
    clearTimer(name) {
      if (this[name] !== null) this.clock.clearTimeout(this[name]);
      this[name] = null;
    }
  };
  /** What the client does with each control message from the server, by operation (others become events). */
  _AsgiWs.CONTROL = {
    ping(client, message) {
      client.control("pong", "id" in message ? { id: message.id } : {});
    },
    pong(client, message) {
      const sentAt = client.pingSentAt;
      if (sentAt === null || message.id !== client.pingId) return;
      client.rtt = (client.clock.now() - sentAt) / 1e3;
      client.pingSentAt = null;
      client.emit("rtt", client.rtt);
    },
    welcome(client, message) {
      const features = message.features;
      client.features = features !== null && typeof features === "object" ? features : {};
      if (client.resumeState.pending) {
        client.resumeFailed({ $ws: "resume_failed", code: "unsupported", reason: "the server keeps no sessions" });
      }
      client.emit("welcome", message);
    },
    session(client, message) {
      client.resumeState.onSession(message);
      client.emit("session", message);
    },
    resumed(client, message) {
      const mismatch = resumeMismatch(message, client.resumeState.received);
      if (mismatch !== null) {
        client.emit("error", { $ws: "error", code: "resume_mismatch", message: mismatch, detail: message });
      }
      const rooms = client.resumeState.onResumed(message);
      client.restore(rooms);
      client.emit("resumed", message);
    },
    resume_failed(client, message) {
      client.resumeFailed(message);
    },
    error(client, message) {
      client.refused(message);
      client.emit("error", message);
    },
    subscribed(client, message) {
      client.answered("subscribe", message.channel, message);
      client.emit("subscribed", message);
    },
    unsubscribed(client, message) {
      client.answered("unsubscribe", message.channel, message);
      client.emit("unsubscribed", message);
    },
    published(client, message) {
      client.answered("publish", message.id, message);
      client.emit("published", message);
    },
    batch(client, message) {
      const texts = unpackBatch(message);
      if (texts === null) return;
      const ws = client.ws;
      for (const text of texts) {
        if (client.ws !== ws) return;
        client.receiveData(text);
      }
    }
  };
  var AsgiWs = _AsgiWs;
  function waiterKey(op, key) {
    return `${op}\0${typeof key}\0${key}`;
  }
  function settled(message) {
    return Promise.resolve(message);
  }
  function detach(ws) {
    ws.onopen = null;
    ws.onmessage = null;
    ws.onclose = null;
    ws.onerror = noop;
  }
  function defaultStorage() {
    try {
      return globalThis.sessionStorage;
    } catch {
      return void 0;
    }
  }

  // src/global.ts
  Object.assign(AsgiWs, {
    AsgiWs,
    AsgiWsError,
    Attempts,
    BATCH_PREFIX,
    ACK_EVERY,
    ceiling,
    closeAction,
    decode,
    DEFAULT_BACKOFF,
    encode,
    heartbeatStep,
    isControl,
    parseDelivery,
    PREFIX,
    RESTART_CODES,
    ResumeState,
    SendQueue,
    SessionPersistence,
    STOP_CODES,
    unpackBatch,
    VERSION
  });
  globalThis.AsgiWs = AsgiWs;
})();
