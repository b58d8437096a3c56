/**
 * The asgi_ws client for browsers and Node.js: one `AsgiWs` is one logical connection that
 * outlives its sockets. It says `hello`, answers the server's heartbeat pings and sends its
 * own (so a half-open socket is noticed), reconnects with full-jitter backoff, resumes its
 * session where the server runs ResumeMiddleware (docs/protocol.md §9), restores its pub/sub
 * subscriptions, and queues what is sent while it is away. Decisions live in backoff.ts and
 * resume.ts; this file moves frames.
 */

import {
  Attempts,
  type BackoffOptions,
  CREDENTIALS_EXPIRED,
  closeAction,
  DEFAULT_BACKOFF,
  HEARTBEAT_TIMEOUT,
  heartbeatStep,
} from "./backoff";
import { AsgiWsError } from "./errors";
import {
  type AsgiWsEventMap,
  type CloseDetail,
  type ConnectionState,
  Emitter,
  type EventName,
  type Handler,
  type ResumedMessage,
} from "./events";
import {
  type ControlMessage,
  decode,
  encode,
  isBinary,
  isControl,
  parseDelivery,
  PREFIX,
  unpackBatch,
  VERSION,
} from "./protocol";
import { type BufferPolicy, SendQueue } from "./queue";
import { ACK_EVERY, ResumeState, resumeMismatch, SessionPersistence, type SessionSnapshot, type StorageLike } from "./resume";
import { OPEN, resolveWebSocket, type WebSocketConstructor, type WebSocketLike } from "./websocket";

/** Where to connect: a URL (relative to the page in browsers), a list tried in turn after each failure, or a function called before every attempt. */
export type UrlSource = string | URL | ReadonlyArray<string | URL> | (() => string | URL | Promise<string | URL>);
/** A ticket, or a function (sync or async) returning a fresh one before every attempt. */
export type TicketSource = string | (() => string | Promise<string>);
/** Application data: text, or bytes (sent as a binary frame). */
export type Data = string | ArrayBuffer | ArrayBufferView | Blob;

/** Time, for the client's timers (tests pass a fake one). Milliseconds. */
export interface Clock {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface PersistOptions {
  /** The storage key (default `asgi-ws:session:<url>`). */
  key?: string;
  /** Where to keep it (default `sessionStorage`). */
  storage?: StorageLike;
}

export interface AsgiWsOptions {
  /** Subprotocols to offer. */
  protocols?: string | string[];
  /** Added as the `ticketParam` query parameter; a function is called before every attempt (and makes 4401 retried). */
  ticket?: TicketSource;
  /** The query parameter the server's SignedTicket reads (`ticket`). */
  ticketParam?: string;
  /** Reconnection policy (seconds): `{base: 0.5, cap: 30, maxAttempts: Infinity, resetAfter: 10, restartJitter: 0.25}`. */
  backoff?: Partial<BackoffOptions>;
  /** Seconds of silence from the server before the client pings (15; 0: never). */
  pingInterval?: number;
  /** Seconds a ping has to be answered before the connection is treated as dead (10). */
  pingTimeout?: number;
  /** Seconds for an opening handshake, and for the answer to a resume request (10). */
  openTimeout?: number;
  /** Ask for a resumable session (`ws_resume`; true). */
  resume?: boolean;
  /**
   * Ask the server for batch frames (`hello`'s `batch`; true): messages that come faster than the
   * client takes them one by one arrive in one frame, unpacked here; events still come one a
   * message, and resumption counts each.
   */
  batch?: boolean;
  /** Keep the session across a page reload in `sessionStorage` (false). */
  persist?: boolean | PersistOptions;
  /** Messages (publish, send) kept while disconnected (100). */
  maxBuffered?: number;
  /** When the queue is full: refuse the new message (`reject`), or drop the oldest (`drop_oldest`). */
  bufferPolicy?: BufferPolicy;
  /** Extra close codes after which the client does not reconnect. */
  stopCodes?: Iterable<number>;
  /** The WebSocket class to use (default: the platform's; on Node.js 20-21 the `ws` package). */
  WebSocket?: WebSocketConstructor;
  /** Timers (tests). */
  clock?: Clock;
  /** Source of [0, 1) numbers for the jitter (default Math.random, looked up at each use). */
  random?: () => number;
}

export interface SubscribeOptions {
  /** Receive presence: the member list in the answer (`members`) and `presence_diff` events. */
  presence?: boolean;
  /** Shown to other members by presence (at most 1 KiB of JSON). */
  meta?: Record<string, unknown>;
}

export interface PublishOptions {
  /** The request id the server echoes in `published` (default: one of the client's). */
  id?: string | number;
}

type RequestOp = "subscribe" | "unsubscribe" | "publish";
type RequestKey = string | number;

interface Queued {
  frame: Data;
  publishId?: RequestKey;
}

interface Waiter {
  resolve(message: ControlMessage): void;
  reject(error: AsgiWsError): void;
}

type ControlHandler = (client: AsgiWs, message: ControlMessage) => void;

const DEFAULT_CLOCK: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => globalThis.setTimeout(callback, ms),
  clearTimeout: (handle) => globalThis.clearTimeout(handle as ReturnType<typeof setTimeout>),
};

const noop = (): void => {};

/** Events the client emits itself: never under the name of a control message's operation. */
const OWN_EVENTS: ReadonlySet<string> = new Set([
  "open", "close", "reconnecting", "giveup", "state", "message", "raw", "rtt", "session_lost", "control",
  "error", "welcome", "session", "resumed", "resume_failed", "subscribed", "unsubscribed", "published",
]);

export class AsgiWs {
  /** Where to connect (see UrlSource); read before every attempt. */
  url: UrlSource;
  protocols: string | string[] | undefined;
  ticket: TicketSource | undefined;
  ticketParam: string;
  /** The reconnection policy; a change applies from the next delay on. */
  readonly backoff: BackoffOptions;
  pingInterval: number;
  pingTimeout: number;
  openTimeout: number;
  /** Whether the next connections ask for batch frames. */
  batch: boolean;
  readonly stopCodes: Set<number>;
  /** The current socket (null between connections). */
  ws: WebSocketLike | null = null;
  state: ConnectionState = "idle";
  /** True after close() or a close that is not retried, until connect(). */
  stopped = false;
  /** Seconds: the round trip of the client's last answered ping. */
  rtt: number | null = null;
  /** What the server announced in its last `welcome`. */
  features: Record<string, unknown> = {};
  /** Channel -> its subscribe request: restored after every reconnection that did not resume them. */
  readonly subscriptions = new Map<string, Record<string, unknown>>();

  private readonly events = new Emitter();
  private readonly resumeState: ResumeState;
  private readonly attempts: Attempts;
  private readonly queue: SendQueue<Queued>;
  private readonly clock: Clock;
  private readonly WebSocketClass: WebSocketConstructor | undefined;
  private readonly persistence: SessionPersistence | null = null;
  private readonly waiters = new Map<string, Waiter[]>();
  private readonly inflight: Record<RequestOp, RequestKey[]> = { subscribe: [], unsubscribe: [], publish: [] };
  private generation = 0; // bumped by every attempt and by close(): a stale attempt stops where it is
  private urlIndex = 0;
  private publishSeq = 0;
  private ready = false; // open, resume settled, subscriptions restored, queue flushed
  private retryTimer: unknown = null;
  private tickTimer: unknown = null;
  private openTimer: unknown = null;
  private openedAt = 0;
  private lastReceived = 0;
  private lastAckAt = 0;
  private pingId = 0;
  private pingSentAt: number | null = null;

  constructor(url: UrlSource, options: AsgiWsOptions = {}) {
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
    this.queue = new SendQueue<Queued>(options.maxBuffered ?? 100, options.bufferPolicy ?? "reject");
    if (options.persist) {
      const persist = typeof options.persist === "object" ? options.persist : {};
      const storage = persist.storage ?? defaultStorage();
      if (storage) {
        const key = persist.key ?? `asgi-ws:session:${typeof url === "string" ? url : ""}`;
        this.persistence = new SessionPersistence(storage, key);
        const snapshot = this.persistence.take();
        if (snapshot && this.resumeState.enabled) this.resumeState.restore(snapshot);
        const target = globalThis as unknown as { addEventListener?: (type: string, listener: (event: never) => void) => void };
        target.addEventListener?.("pagehide", () => this.saveSession());
        // Back from the back/forward cache: this page goes on with its session, so a copy must not stay behind.
        target.addEventListener?.("pageshow", (event: { persisted?: boolean }) => {
          if (event.persisted) this.persistence?.take();
        });
      }
    }
  }

  // -- events ----------------------------------------------------------------------------

  /** Register a handler (see AsgiWsEventMap); returns the client. */
  on<K extends EventName>(event: K, handler: Handler<K>): this;
  on(event: string, handler: (detail: ControlMessage) => void): this;
  on(event: string, handler: (detail: never) => void): this {
    this.events.on(event, handler);
    return this;
  }

  off<K extends EventName>(event: K, handler: Handler<K>): this;
  off(event: string, handler: (detail: ControlMessage) => void): this;
  off(event: string, handler: (detail: never) => void): this {
    this.events.off(event, handler);
    return this;
  }

  emit<K extends EventName>(event: K, detail: AsgiWsEventMap[K]): void;
  emit(event: string, detail: unknown): void;
  emit(event: string, detail: unknown): void {
    this.events.emit(event, detail);
  }

  // -- state -----------------------------------------------------------------------------

  /** The resumable session, `{id, token}`, once the server gave one. */
  get session(): { id: string; token: string } | null {
    const { id, token } = this.resumeState;
    return id !== null && token !== null ? { id, token } : null;
  }

  /** Data frames received in the current session (the count sent when resuming). */
  get received(): number {
    return this.resumeState.received;
  }

  /** Ask for a resumable session on the next connections. */
  get resume(): boolean {
    return this.resumeState.enabled;
  }

  set resume(enabled: boolean) {
    this.resumeState.enabled = enabled;
  }

  /** Reconnection attempts in a row since the last stable connection. */
  get attempt(): number {
    return this.attempts.attempt;
  }

  /** What waits for the next connection, oldest first. */
  get buffer(): readonly Queued[] {
    return this.queue.items;
  }

  get maxBuffered(): number {
    return this.queue.max;
  }

  set maxBuffered(max: number) {
    this.queue.max = max;
  }

  get bufferPolicy(): BufferPolicy {
    return this.queue.policy;
  }

  set bufferPolicy(policy: BufferPolicy) {
    this.queue.policy = policy;
  }

  /** Write the session to the `persist` storage now (done by itself on `pagehide`). */
  saveSession(): void {
    this.persistence?.save(this.stopped && !this.resumeState.active ? null : this.resumeState.snapshot());
  }

  // -- connecting and closing ------------------------------------------------------------

  /** Connect; while `reconnecting`, try now instead of waiting for the backoff's delay. */
  connect(): this {
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
  close(code = 1000, reason = ""): void {
    this.stopped = true;
    this.generation += 1;
    this.clearTimer("retryTimer");
    this.clearTimer("openTimer");
    this.clearTimer("tickTimer");
    if (code === 1000) {
      this.resumeState.reset();
      this.persistence?.save(null);
    }
    this.failAll(new AsgiWsError("closed", "asgi_ws: the client was closed"));
    const ws = this.ws;
    if (ws) {
      try {
        ws.close(code, reason);
      } catch {
        /* already closing */
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
  subscribe(channel: string, options: SubscribeOptions = {}): Promise<ControlMessage> {
    const fields: Record<string, unknown> = { channel, presence: !!options.presence };
    if (options.meta) fields.meta = options.meta;
    this.subscriptions.set(channel, fields);
    const answer = this.waitFor("subscribe", channel);
    if (this.writable()) this.request("subscribe", channel, fields);
    return answer;
  }

  /** Stop receiving `channel` and forget the subscription. */
  unsubscribe(channel: string): Promise<ControlMessage> {
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
  publish(channel: string, data: unknown, options?: PublishOptions | string | number): Promise<ControlMessage> {
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
  send(data: Data): boolean {
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
  sendControl(op: string, fields: Record<string, unknown> = {}): void {
    this.control(op, fields);
  }

  /**
   * Measure the round trip now: sends a ping unless one is unanswered; the pong sets `rtt`
   * and emits `rtt`. Unanswered within pingTimeout the connection is treated as dead (4408)
   * as for the heartbeat's own pings, unless pingInterval is 0. Returns whether a ping was sent.
   */
  ping(): boolean {
    if (this.state !== "open" || this.pingSentAt !== null) return false;
    this.pingId += 1;
    this.pingSentAt = this.clock.now();
    this.control("ping", { id: this.pingId });
    return true;
  }

  // -- one connection --------------------------------------------------------------------

  private async open(): Promise<void> {
    const generation = ++this.generation;
    this.setState("connecting");
    let url: string;
    let WebSocketClass: WebSocketConstructor;
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
    if (generation !== this.generation) return; // close() or another connect() meanwhile
    let ws: WebSocketLike;
    try {
      ws = this.protocols ? new WebSocketClass(url, this.protocols) : new WebSocketClass(url);
    } catch (error) {
      this.stop(); // a URL the WebSocket refuses (scheme, syntax) will not get better
      this.emit("giveup", { code: 0, reason: `${error}` });
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onerror = noop; // the ws package throws on an "error" nobody listens to; onclose follows
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
    }, this.openTimeout * 1000);
  }

  /** The URL of the next attempt: its source, a fresh ticket, the resume parameters. */
  private async target(): Promise<string> {
    const source = this.url;
    let url: string | URL;
    if (typeof source === "function") url = await source();
    else if (Array.isArray(source)) {
      const list = source as ReadonlyArray<string | URL>;
      if (list.length === 0) throw new Error("the URL list is empty");
      url = list[this.urlIndex % list.length];
    } else url = source as string | URL;
    const base = (globalThis as { location?: { href: string } }).location?.href;
    const absolute = new URL(String(url), base);
    if (absolute.protocol === "http:") absolute.protocol = "ws:";
    if (absolute.protocol === "https:") absolute.protocol = "wss:";
    if (this.ticket !== undefined) {
      const ticket = typeof this.ticket === "function" ? await this.ticket() : this.ticket;
      absolute.searchParams.set(this.ticketParam, String(ticket));
    }
    for (const [name, value] of Object.entries(this.resumeState.query())) absolute.searchParams.set(name, value);
    return absolute.href;
  }

  private opened(ws: WebSocketLike): void {
    if (this.ws !== ws) return;
    this.clearTimer("openTimer");
    const now = this.clock.now();
    this.attempts.connected(now);
    this.openedAt = this.lastReceived = this.lastAckAt = now;
    this.ready = false;
    this.pingSentAt = null; // a ping of the last socket gets no answer here
    for (const op of Object.keys(this.inflight) as RequestOp[]) this.inflight[op].length = 0;
    this.setState("open");
    this.control("hello", this.batch ? { v: VERSION, batch: true } : { v: VERSION });
    // Resuming: subscriptions and the queue wait for the server's answer (resumed/resume_failed
    // come before anything else); otherwise they go now.
    if (!this.resumeState.pending) this.restore([]);
    this.tick();
    this.emit("open", { protocol: ws.protocol });
  }

  private closed(ws: WebSocketLike, code: number, reason: string): void {
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
      this.settle("unsubscribe", channel, { $ws: "unsubscribed", channel }); // nothing to undo on the next one
    }
    this.inflight.subscribe.length = 0; // sent again by the next connection's restore
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
  private abandon(ws: WebSocketLike, code: number, reason: string): void {
    detach(ws);
    try {
      if (typeof ws.terminate === "function") ws.terminate();
      else if (ws.readyState === OPEN) ws.close(code, reason);
      else ws.close();
    } catch {
      /* gone already */
    }
    this.closed(ws, code, reason);
  }

  private reconnectLater(cause: CloseDetail): void {
    const delay = this.attempts.nextDelay(this.clock.now(), cause.code);
    if (delay === null) {
      this.stop();
      this.emit("giveup", cause);
      return;
    }
    this.urlIndex += 1; // a list of URLs: the next attempt tries the next one
    this.setState("reconnecting");
    this.emit("reconnecting", { attempt: this.attempts.attempt, delay, ...cause });
    this.retryTimer = this.clock.setTimeout(() => {
      this.retryTimer = null;
      void this.open();
    }, delay * 1000);
  }

  /** The client stops for good (until connect()): what waits is rejected. */
  private stop(): void {
    this.stopped = true;
    this.setState("closed");
    this.failAll(new AsgiWsError("closed", "asgi_ws: the client stopped"));
  }

  /** Reject every queued message and every request waiting for an answer. */
  private failAll(error: AsgiWsError): void {
    this.failQueue(error);
    for (const key of [...this.waiters.keys()]) this.rejectKey(key, error);
  }

  // -- receiving -----------------------------------------------------------------------------

  private receive(data: unknown): void {
    this.lastReceived = this.clock.now();
    if (!isControl(data)) {
      this.receiveData(data as string | ArrayBuffer);
      return;
    }
    const message = decode(data);
    if (message === null) return;
    const table = AsgiWs.CONTROL;
    const handler = Object.prototype.hasOwnProperty.call(table, message.$ws) ? table[message.$ws] : null;
    if (handler) handler(this, message);
    else {
      // Named after its operation, unless that names one of the client's own events: a server's
      // {"$ws":"close"} or {"$ws":"message"} is not a close, nor a delivery.
      if (!OWN_EVENTS.has(message.$ws)) this.emit(message.$ws, message);
      this.emit("control", message);
    }
  }

  /** A data frame, or a message of a batch frame: counted for resumption, then handed to the application. */
  private receiveData(data: string | ArrayBuffer): void {
    const seq = this.resumeState.count(); // the n-th data frame (or batched message) of the session is seq n
    if (this.resumeState.active && seq - this.resumeState.acked >= ACK_EVERY) this.ack();
    const delivery = parseDelivery(data);
    if (delivery) this.emit("message", delivery);
    else this.emit("raw", data);
  }

  /** Subscribe again to what the server did not restore, send what waits, then become ready. Once per connection. */
  private restore(restoredRooms: readonly string[]): void {
    if (this.ready || this.state !== "open") return;
    this.ready = true;
    const restored = new Set(restoredRooms);
    for (const [channel, fields] of this.subscriptions) {
      if (restored.has(channel)) this.settle("subscribe", channel, { $ws: "subscribed", channel, restored: true });
      else this.request("subscribe", channel, fields);
    }
    for (const item of this.queue.clear()) this.write(item.frame, item.publishId);
  }

  private ack(): void {
    const state = this.resumeState;
    if (!state.active || state.received === state.acked) return;
    state.acked = state.received;
    this.lastAckAt = this.clock.now();
    this.control("ack", { seq: state.received });
  }

  /** Per connection, every ≤ 1 s: acks, the deadline of a resume answer, the heartbeat. */
  private tick(): void {
    const ws = this.ws;
    if (!ws || this.state !== "open") return;
    // Armed again first: a send that throws cannot stop the heartbeat.
    const period = this.pingInterval > 0 ? Math.min(1000, this.pingInterval * 500, this.pingTimeout * 500) : 1000;
    this.tickTimer = this.clock.setTimeout(() => this.tick(), Math.max(50, period));
    const now = this.clock.now();
    if (now - this.lastAckAt >= 1000) this.ack();
    if (this.resumeState.pending && now - this.openedAt >= this.openTimeout * 1000) {
      this.resumeFailed({ $ws: "resume_failed", code: "unsupported", reason: "no answer to the resume request" });
    }
    if (!(this.pingInterval > 0)) return;
    const step = heartbeatStep(now, {
      lastReceived: this.lastReceived,
      pingSentAt: this.pingSentAt,
      interval: this.pingInterval * 1000,
      timeout: this.pingTimeout * 1000,
    });
    if (step === "dead") {
      this.abandon(ws, HEARTBEAT_TIMEOUT, "heartbeat timeout (client)");
    } else if (step === "ping") {
      this.pingSentAt = null; // the last ping was answered by other frames, if not by its pong
      this.ping();
    }
  }

  private resumeFailed(message: ControlMessage): void {
    this.resumeState.onResumeFailed();
    this.emit("resume_failed", message as AsgiWsEventMap["resume_failed"]);
    this.restore([]);
  }

  // -- sending -------------------------------------------------------------------------------

  private writable(): boolean {
    return this.ws !== null && this.state === "open" && this.ready && this.ws.readyState === OPEN;
  }

  private write(frame: Data, publishId?: RequestKey): void {
    if (publishId !== undefined) this.inflight.publish.push(publishId);
    (this.ws as WebSocketLike).send(frame);
  }

  private control(op: string, fields: Record<string, unknown> = {}): void {
    const ws = this.ws;
    if (ws && ws.readyState === OPEN) ws.send(encode(op, fields));
  }

  private request(op: RequestOp, key: RequestKey, fields: Record<string, unknown>): void {
    this.inflight[op].push(key);
    this.control(op, fields);
  }

  /** Queue a message for the next connection; false when the queue refused it. */
  private enqueue(item: Queued): boolean {
    const { accepted, dropped } = this.queue.push(item);
    if (dropped) this.refuseQueued(dropped, "dropped from the send queue to make room (drop_oldest)");
    if (!accepted) this.refuseQueued(item, `${this.queue.max} messages already wait for a connection`);
    return accepted;
  }

  private refuseQueued(item: Queued, why: string): void {
    if (item.publishId !== undefined) this.settle("publish", item.publishId, new AsgiWsError("buffer_full", why, "publish"));
  }

  private failQueue(error: AsgiWsError): void {
    for (const item of this.queue.clear()) {
      if (item.publishId !== undefined) this.settle("publish", item.publishId, error);
    }
  }

  // -- requests and their answers ----------------------------------------------------------

  private waitFor(op: RequestOp, key: RequestKey): Promise<ControlMessage> {
    const promise = new Promise<ControlMessage>((resolve, reject) => {
      const id = waiterKey(op, key);
      const list = this.waiters.get(id);
      const waiter = { resolve, reject };
      if (list) list.push(waiter);
      else this.waiters.set(id, [waiter]);
    });
    promise.catch(noop); // a caller that ignores the answer never sees an unhandled rejection
    return promise;
  }

  private settle(op: RequestOp, key: RequestKey, result: ControlMessage | AsgiWsError): void {
    const id = waiterKey(op, key);
    if (result instanceof AsgiWsError) this.rejectKey(id, result);
    else {
      const list = this.waiters.get(id);
      this.waiters.delete(id);
      for (const waiter of list ?? []) waiter.resolve(result);
    }
  }

  private rejectKey(id: string, error: AsgiWsError): void {
    const list = this.waiters.get(id);
    this.waiters.delete(id);
    for (const waiter of list ?? []) waiter.reject(error);
  }

  /**
   * The server answered `op` for `key`. It answers a connection's requests in order, so the
   * requests of that kind sent before this one and still unanswered were dropped (rate limit).
   */
  private answered(op: RequestOp, key: unknown, message: ControlMessage): void {
    if (typeof key !== "string" && typeof key !== "number") return;
    const inflight = this.inflight[op];
    const index = inflight.indexOf(key);
    if (index >= 0) {
      const skipped = inflight.splice(0, index + 1).slice(0, -1);
      for (const lost of skipped) {
        if (op === "subscribe") this.subscriptions.delete(lost as string);
        this.settle(op, lost, new AsgiWsError("dropped", `the server dropped this ${op} (rate limit)`, op));
      }
    }
    this.settle(op, key, message);
  }

  private refused(message: ControlMessage): void {
    const ref = message.ref;
    if (ref !== "subscribe" && ref !== "unsubscribe" && ref !== "publish") return;
    const key = this.inflight[ref].shift(); // answered in order: the oldest one failed
    if (key === undefined) return;
    if (ref === "subscribe") this.subscriptions.delete(key as string);
    this.settle(ref, key, new AsgiWsError(String(message.code), String(message.message ?? ""), ref));
  }

  // -- helpers -----------------------------------------------------------------------------

  private setState(state: ConnectionState): void {
    if (this.state === state) return;
    this.state = state;
    this.emit("state", state);
  }

  private clearTimer(name: "retryTimer" | "tickTimer" | "openTimer"): void {
    if (this[name] !== null) this.clock.clearTimeout(this[name]);
    this[name] = null;
  }

  /** What the client does with each control message from the server, by operation (others become events). */
  private static readonly CONTROL: Readonly<Record<string, ControlHandler>> = {
    ping(client, message) {
      client.control("pong", "id" in message ? { id: message.id } : {});
    },
    pong(client, message) {
      const sentAt = client.pingSentAt;
      if (sentAt === null || message.id !== client.pingId) return; // an answer to an older socket's ping
      client.rtt = (client.clock.now() - sentAt) / 1000;
      client.pingSentAt = null;
      client.emit("rtt", client.rtt);
    },
    welcome(client, message) {
      const features = message.features;
      client.features = features !== null && typeof features === "object" ? (features as Record<string, unknown>) : {};
      // A server with sessions answers a resume before anything else: by welcome it has none.
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
        // A broken server: frames were missed, or come twice; the application should resync.
        client.emit("error", { $ws: "error", code: "resume_mismatch", message: mismatch, detail: message });
      }
      const rooms = client.resumeState.onResumed(message);
      client.restore(rooms);
      client.emit("resumed", message as ResumedMessage);
    },
    resume_failed(client, message) {
      client.resumeFailed(message); // a `session` message of a fresh session follows
    },
    error(client, message) {
      client.refused(message);
      client.emit("error", message as AsgiWsEventMap["error"]);
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
      // Several messages in one frame: each is a data frame of its own, in order.
      const texts = unpackBatch(message);
      if (texts === null) return;
      const ws = client.ws;
      for (const text of texts) {
        if (client.ws !== ws) return; // a handler closed the client (or moved it to another socket)
        client.receiveData(text);
      }
    },
  };
}

function waiterKey(op: RequestOp, key: RequestKey): string {
  return `${op}\u0000${typeof key}\u0000${key}`;
}

function settled(message: ControlMessage): Promise<ControlMessage> {
  return Promise.resolve(message);
}

function detach(ws: WebSocketLike): void {
  ws.onopen = null;
  ws.onmessage = null;
  ws.onclose = null;
  ws.onerror = noop;
}

function defaultStorage(): StorageLike | undefined {
  try {
    return (globalThis as { sessionStorage?: StorageLike }).sessionStorage;
  } catch {
    return undefined; // access denied (privacy settings, sandboxed frames)
  }
}

export type { SessionSnapshot };
