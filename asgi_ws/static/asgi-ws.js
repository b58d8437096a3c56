/*
 * asgi_ws browser client.
 *
 * Speaks the asgi_ws control protocol (docs/protocol.md): says hello, answers the server's
 * heartbeat pings and sends its own (browsers cannot see WebSocket protocol pings, so this is
 * how a page notices a dead connection), subscribes to channels of a PubSubApp and publishes
 * to them, and reconnects with exponential backoff and full jitter (at once after a 1001 or
 * 1012 close: the server went away or restarts, another takes the client). Where the server runs
 * ResumeMiddleware it resumes its session: the messages missed while disconnected arrive, in
 * order, exactly once, and the subscriptions come back with the session (protocol §9);
 * elsewhere it restores its subscriptions itself. Include it with
 * <script src="/asgi-ws.js"></script>; it defines AsgiWs.
 *
 *   const client = new AsgiWs("/ws");          // a URL, or a function returning one (fresh ticket)
 *   client.on("message", ({channel, data}) => ...);
 *   client.subscribe("lobby");
 *   client.publish("lobby", {text: "hi"});
 *   client.connect();
 */
(function (global) {
  "use strict";

  const PREFIX = '{"$ws"';
  const NO_RECONNECT = new Set([1000, 4409]); // closed on purpose; the session moved elsewhere
  const RESTART = new Set([1001, 1012]);      // going away (a drain), restarting: come back at once

  class AsgiWs {
    constructor(url, options = {}) {
      this.url = url;
      this.protocols = options.protocols;
      this.backoff = Object.assign({base: 0.5, cap: 30, maxAttempts: Infinity, resetAfter: 10, restartJitter: 0.25},
                                   options.backoff || {});
      this.pingInterval = options.pingInterval ?? 15;    // seconds of silence before the client pings
      this.pingTimeout = options.pingTimeout ?? 10;      // seconds a ping has to be answered
      this.maxBuffered = options.maxBuffered ?? 100;     // publishes kept while reconnecting
      this.resume = options.resume ?? true;              // ask for a resumable session (ws_resume)
      this.session = null;                               // {id, token} of the resumable session
      this.received = 0;                                 // data frames received in the session
      this._acked = 0;
      this._restored = false;                            // subscriptions restored on this socket
      this.handlers = {};
      this.subscriptions = new Map();                    // channel -> the subscribe request
      this.buffer = [];
      this.ws = null;
      this.state = "idle";
      this.attempt = 0;
      this.stopped = false;
      this.rtt = null;
      this._pingId = 0;
      this._pingSentAt = null;
      this._timer = null;
      this._openedAt = 0;
      this._lastReceived = 0;
    }

    /** Register a handler: open, welcome, message, raw, subscribed, unsubscribed, presence,
     *  presence_diff, published, error, close, reconnecting, giveup, state, resumed,
     *  resume_failed (the session is gone: reload the state you show), session_lost (close 4404:
     *  the server's store lost the session; a new one starts on the next connection: reload too),
     *  session (the server's session message: a new session, or a fresh token every window / 3),
     *  rtt (seconds: a heartbeat ping was answered; also in client.rtt). */
    on(event, handler) {
      (this.handlers[event] = this.handlers[event] || []).push(handler);
      return this;
    }

    emit(event, detail) {
      for (const handler of this.handlers[event] || []) {
        try { handler(detail); } catch (error) { console.error("asgi_ws handler failed", error); }
      }
    }

    /** Connect; while "reconnecting", retry now instead of waiting for the backoff's delay. */
    connect() {
      this.stopped = false;
      if (this.ws && (this.state === "open" || this.state === "connecting")) return this;
      clearTimeout(this._timer);                   // a retry that was waiting happens now, once
      this._open();
      return this;
    }

    close(code = 1000, reason = "") {
      this.stopped = true;
      clearTimeout(this._timer);
      if (this.ws) this.ws.close(code, reason);
      this._setState("closed");
    }

    /** Subscribe to a channel; options: presence (live member list), meta (shown to others). */
    subscribe(channel, options = {}) {
      const fields = {channel, presence: !!options.presence};
      if (options.meta) fields.meta = options.meta;
      this.subscriptions.set(channel, fields);
      if (this.state === "open" && this._restored) this._control("subscribe", fields);
      return this;
    }

    unsubscribe(channel) {
      this.subscriptions.delete(channel);
      if (this.state === "open") this._control("unsubscribe", {channel});
      return this;
    }

    /** Publish a JSON value. Bytes cannot be published from a page (JSON.stringify would turn a
     *  Uint8Array into {"0": ..}, an ArrayBuffer into {}): send them with send(), or publish them
     *  from server code (subscribers then get {channel, binary: "<base64>"}). */
    publish(channel, data, id) {
      if (data instanceof ArrayBuffer || ArrayBuffer.isView(data) || (global.Blob && data instanceof global.Blob)) {
        throw new TypeError("asgi_ws: publish() carries JSON, not bytes: use send() or publish them server-side");
      }
      const fields = id === undefined ? {channel, data} : {channel, data, id};
      if (this.state === "open" && this._restored) this._control("publish", fields);
      else if (this.buffer.length < this.maxBuffered) this.buffer.push(fields);
      else this.emit("error", {code: "buffer_full", message: "publish dropped while disconnected"});
    }

    /** Measure the round trip now (the heartbeat pings by itself only after pingInterval of
     *  silence): sends a ping unless one is unanswered; the pong sets rtt and emits "rtt".
     *  Unanswered within pingTimeout, it closes the connection (4408) as the heartbeat's own
     *  would, unless pingInterval is 0. Returns whether a ping was sent. */
    ping() {
      if (this.state !== "open" || this._pingSentAt !== null) return false;
      this._pingId += 1;
      this._pingSentAt = Date.now();
      this._control("ping", {id: this._pingId});
      return true;
    }

    /** Send an application message (not part of the protocol) as it is. */
    send(data) {
      if (this.state !== "open") throw new Error("asgi_ws: not connected");
      this.ws.send(data);
    }

    // -- internals ---------------------------------------------------------------------

    async _open() {
      this._setState("connecting");
      let url;
      try {
        url = typeof this.url === "function" ? await this.url() : this.url;
      } catch (error) {
        this._scheduleReconnect({code: 0, reason: `no URL: ${error}`});
        return;
      }
      const absolute = new URL(url, global.location ? global.location.href : undefined);
      if (absolute.protocol === "http:") absolute.protocol = "ws:";
      if (absolute.protocol === "https:") absolute.protocol = "wss:";
      if (this.resume) {
        absolute.searchParams.set("ws_resume", this.session ? this.session.token : "new");
        if (this.session) absolute.searchParams.set("ws_seq", String(this.received));
      }
      const ws = this.protocols ? new WebSocket(absolute, this.protocols) : new WebSocket(absolute);
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      ws.onopen = () => {
        this._openedAt = Date.now();
        this._lastReceived = Date.now();
        this._restored = false;
        this._pingSentAt = null;                   // a ping of the last socket gets no answer here
        this._setState("open");
        this._control("hello", {v: 1});
        // Subscriptions are restored once the server said whether it resumed the session
        // (session / resumed / resume_failed come first), or at welcome if it has no sessions.
        this._arm();
        this.emit("open", {protocol: ws.protocol});
      };
      ws.onmessage = (event) => this._receive(event.data);
      ws.onclose = (event) => {
        if (this.ws !== ws) return;
        clearTimeout(this._timer);
        this.emit("close", {code: event.code, reason: event.reason});
        if (event.code === 4404 && this.session) {  // session lost by the store: ask for a new one
          this.session = null;
          this.received = 0;
          this._acked = 0;
          this.emit("session_lost", {code: event.code, reason: event.reason});
        }
        if (this.stopped || NO_RECONNECT.has(event.code)) {
          this._setState("closed");
          return;
        }
        this._scheduleReconnect({code: event.code, reason: event.reason});
      };
    }

    _scheduleReconnect(cause) {
      if (this._openedAt && Date.now() - this._openedAt > this.backoff.resetAfter * 1000) this.attempt = 0;
      this._openedAt = 0;
      if (this.attempt >= this.backoff.maxAttempts) {
        this._setState("closed");
        this.emit("giveup", cause);
        return;
      }
      // After 1001/1012 the first attempt in a row waits only the restart jitter, not the backoff.
      const ceiling = RESTART.has(cause.code) && this.attempt === 0
        ? this.backoff.restartJitter : Math.min(this.backoff.cap, this.backoff.base * 2 ** this.attempt);
      const delay = Math.random() * ceiling;
      this.attempt += 1;
      this._setState("reconnecting");
      this.emit("reconnecting", {attempt: this.attempt, delay, ...cause});
      this._timer = setTimeout(() => this._open(), delay * 1000);
    }

    _receive(data) {
      this._lastReceived = Date.now();
      if (typeof data !== "string" || !data.startsWith(PREFIX)) {
        this.received += 1;                       // the n-th data frame of the session is seq n
        if (this.session && this.received - this._acked >= 100) this._ack();
        this._application(data);
        return;
      }
      let msg;
      try { msg = JSON.parse(data); } catch (error) { return; }
      switch (msg.$ws) {
        case "ping": this._control("pong", msg.id === undefined ? {} : {id: msg.id}); break;
        case "pong":
          if (this._pingSentAt !== null && msg.id === this._pingId) {
            this.rtt = (Date.now() - this._pingSentAt) / 1000;
            this.emit("rtt", this.rtt);
          }
          this._pingSentAt = null;
          break;
        case "welcome":
          this._restore([]);                      // a server without sessions: restore everything
          this.emit("welcome", msg);
          break;
        case "session":
          if (!this.session || this.session.id !== msg.id) { this.received = 0; this._acked = 0; }
          this.session = {id: msg.id, token: msg.token};
          this._restore([]);
          this.emit("session", msg);
          break;
        case "resumed":
          this.session = {id: msg.id, token: msg.token};
          this.received = msg.seq;
          this._acked = Math.min(this._acked, msg.seq);
          this._restore(msg.rooms || []);
          this.emit("resumed", msg);
          break;
        case "resume_failed":
          this.session = null;                    // a "session" message for a fresh one follows
          this.received = 0;
          this._acked = 0;
          this.emit("resume_failed", msg);
          break;
        case "error": this.emit("error", msg); break;
        default: this.emit(msg.$ws, msg);
      }
    }

    _application(data) {
      if (typeof data === "string" && data.startsWith('{"channel"')) {
        try {
          const msg = JSON.parse(data);
          this.emit("message", msg);
          return;
        } catch (error) { /* not a delivery after all */ }
      }
      this.emit("raw", data);
    }

    /** Subscribe again to what the server did not restore, then send the buffered publishes. */
    _restore(restoredRooms) {
      if (this._restored) return;
      this._restored = true;
      const restored = new Set(restoredRooms);
      for (const [channel, fields] of this.subscriptions) {
        if (!restored.has(channel)) this._control("subscribe", fields);
      }
      for (const fields of this.buffer.splice(0)) this._control("publish", fields);
    }

    _ack() {
      if (!this.session || this.received === this._acked) return;
      this._acked = this.received;
      this._control("ack", {seq: this.received});
    }

    _control(op, fields = {}) {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({$ws: op, ...fields}));
    }

    _arm() {
      clearTimeout(this._timer);
      if (this.state !== "open") return;
      // Armed again before anything is sent: a send that throws cannot stop the heartbeat.
      this._timer = setTimeout(() => this._arm(), 1000);
      this._ack();                                 // at most once a second, when frames arrived
      if (!this.pingInterval) return;
      const silence = (Date.now() - this._lastReceived) / 1000;
      if (this._pingSentAt !== null) {
        if ((Date.now() - this._pingSentAt) / 1000 >= this.pingTimeout) {
          if (this._lastReceived < this._pingSentAt) {
            clearTimeout(this._timer);
            this.ws.close(4408, "heartbeat timeout (client)");   // nothing since the ping: dead, reconnect
            return;
          }
          this._pingSentAt = null;                                // something arrived: alive
        }
      } else if (silence >= this.pingInterval) {
        this.ping();
      }
    }

    _setState(state) {
      if (this.state === state) return;
      this.state = state;
      this.emit("state", state);
    }
  }

  global.AsgiWs = AsgiWs;
})(typeof window !== "undefined" ? window : globalThis);
