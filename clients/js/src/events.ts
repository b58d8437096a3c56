/** The client's events, typed: `client.on("message", ({channel, data}) => ...)`. */

import type { ControlMessage, Delivery } from "./protocol";

export type ConnectionState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

export interface CloseDetail {
  /** The close code (1006: dropped, or a handshake the browser does not detail; 4408 from the client: its ping went unanswered). */
  code: number;
  reason: string;
}

export interface ReconnectingDetail extends CloseDetail {
  /** Attempt number (1-based) since the last stable connection. */
  attempt: number;
  /** Seconds until that attempt. */
  delay: number;
}

/** A server `error` (docs/protocol.md §4), or one of the client's own (`buffer_full`). */
export interface ErrorMessage extends ControlMessage {
  code: string;
  message: string;
  ref?: string;
}

export interface ResumedMessage extends ControlMessage {
  id: string;
  token: string;
  seq: number;
  replay: number;
  window: number;
  rooms?: string[];
  room_gap?: boolean;
}

export interface ResumeFailedMessage extends ControlMessage {
  code: string;
  reason: string;
}

export interface AsgiWsEventMap {
  /** A connection opened (its subscriptions are restored, or wait for the resume answer). */
  open: { protocol: string };
  /** The server's answer to hello: `{v, features}`. */
  welcome: ControlMessage;
  /** A pub/sub delivery. */
  message: Delivery;
  /** Any other data frame: text, or binary as an ArrayBuffer. */
  raw: string | ArrayBuffer;
  subscribed: ControlMessage;
  unsubscribed: ControlMessage;
  presence: ControlMessage;
  presence_diff: ControlMessage;
  published: ControlMessage;
  /** A control message this client has no event for (`control` is sent too for those). */
  control: ControlMessage;
  error: ErrorMessage;
  /** A socket closed (also a failed attempt). */
  close: CloseDetail;
  /** The client waits `delay` seconds before attempt `attempt`. */
  reconnecting: ReconnectingDetail;
  /** `backoff.maxAttempts` attempts failed: the client stopped. */
  giveup: CloseDetail;
  state: ConnectionState;
  /** A new session, or a fresh token for the current one (every window / 3). */
  session: ControlMessage;
  /** The session came back; the `replay` missed frames follow. */
  resumed: ResumedMessage;
  /** The session could not be resumed (or the server did not answer: code `unsupported`): reload what you show. */
  resume_failed: ResumeFailedMessage;
  /** Close 4404: the server's store lost the session; the next connection starts a new one: reload what you show. */
  session_lost: CloseDetail;
  /** Seconds: a ping of the client was answered. */
  rtt: number;
}

export type EventName = keyof AsgiWsEventMap;
export type Handler<K extends EventName> = (detail: AsgiWsEventMap[K]) => void;

/** Handlers per event; a handler that throws is logged and the others still run. */
export class Emitter {
  private readonly handlers = new Map<string, Array<(detail: never) => void>>();

  on(event: string, handler: (detail: never) => void): void {
    const list = this.handlers.get(event);
    if (list) list.push(handler);
    else this.handlers.set(event, [handler]);
  }

  off(event: string, handler: (detail: never) => void): void {
    const list = this.handlers.get(event);
    const index = list ? list.indexOf(handler) : -1;
    if (list && index >= 0) list.splice(index, 1);
  }

  emit(event: string, detail: unknown): void {
    for (const handler of [...(this.handlers.get(event) ?? [])]) {
      try {
        (handler as (detail: unknown) => void)(detail);
      } catch (error) {
        console.error(`asgi_ws: a "${event}" handler failed`, error);
      }
    }
  }
}
