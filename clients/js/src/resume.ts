/**
 * The client side of session resumption (docs/protocol.md §9), free of I/O: the newest token,
 * the count of data frames received in the session, what to ask at the next handshake, and
 * optionally a copy in `sessionStorage` so that a reloaded page resumes the session.
 */

import { SESSION_LOST } from "./backoff";
import type { ControlMessage } from "./protocol";

/** Every this many data frames the client acknowledges at once (and otherwise once a second). */
export const ACK_EVERY = 100;

/** What a page keeps across a reload to resume its session. */
export interface SessionSnapshot {
  id: string;
  token: string;
  received: number;
}

/** The subset of the Web Storage API the client uses (`sessionStorage`, or your own). */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** Whether `value` is a count of frames: an integer from 0 to 2**53 - 1. */
function isCount(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

/**
 * What is wrong with a `resumed` message's `seq`, or null when it is the client's count
 * `received`. A server resumes at the count the client sent (`ws_seq`): another one means frames
 * the client never got were skipped (ahead) or frames it has come again (behind); one that is
 * not a count (a fraction, negative, beyond 2**53 - 1, not a number) is ignored.
 */
export function resumeMismatch(message: ControlMessage, received: number): string | null {
  const seq = message.seq;
  if (!isCount(seq)) return `ignored the seq of a resumed message, which is not a count: ${String(JSON.stringify(seq)).slice(0, 40)}`;
  return seq === received ? null : `resumed at seq ${seq} but the client had received ${received} frames`;
}

export class ResumeState {
  /** Id of the current session, once the server created one. */
  id: string | null = null;
  /** The newest resume token: the only one kept (each serves one resume). */
  token: string | null = null;
  /** Seconds the server keeps a dropped session, as it announced. */
  window: number | null = null;
  /** Data frames received in this session (the seq of the last one). */
  received = 0;
  /** The count last acknowledged to the server. */
  acked = 0;
  /** True from a connection that asked to resume until the server's answer. */
  pending = false;

  constructor(public enabled = true) {}

  /** Whether the server gave this client a session (so acks are worth sending). */
  get active(): boolean {
    return this.token !== null;
  }

  /** The handshake's query parameters for the next connection; also starts that connection's bookkeeping. */
  query(): Record<string, string> {
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
  count(): number {
    this.received += 1;
    return this.received;
  }

  /** `session`: a new session, or a fresh token for the current one. Returns whether it is a new session. */
  onSession(message: ControlMessage): boolean {
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
  onResumed(message: ControlMessage): string[] {
    this.pending = false;
    if (typeof message.token === "string") this.token = message.token;
    if (typeof message.id === "string") this.id = message.id;
    if (isCount(message.seq)) {
      // The server numbers from there on (resumeMismatch tells a count other than the client's).
      this.received = message.seq;
      this.acked = Math.min(this.acked, message.seq);
    }
    this.setWindow(message);
    const rooms = message.rooms;
    return Array.isArray(rooms) ? rooms.filter((room): room is string => typeof room === "string") : [];
  }

  /** `resume_failed` (or no answer in time): the session is gone. Returns whether this connection had asked to resume. */
  onResumeFailed(): boolean {
    const wasResuming = this.pending;
    this.reset();
    return wasResuming;
  }

  /** The connection closed with `code`; true when that lost the session (4404: the server's store lost it). */
  onClose(code: number): boolean {
    if (code !== SESSION_LOST || this.token === null) return false;
    this.reset();
    return true;
  }

  /** Forget the session: the next connection asks for a new one. */
  reset(): void {
    this.id = this.token = null;
    this.pending = false;
    this.received = this.acked = 0;
  }

  snapshot(): SessionSnapshot | null {
    return this.id !== null && this.token !== null ? { id: this.id, token: this.token, received: this.received } : null;
  }

  restore(snapshot: SessionSnapshot): void {
    this.id = snapshot.id;
    this.token = snapshot.token;
    this.received = this.acked = snapshot.received;
  }

  private setWindow(message: ControlMessage): void {
    if (typeof message.window === "number") this.window = message.window;
  }
}

/**
 * A session kept in a `Storage` across a page reload. It is written when the page is hidden
 * for good (`pagehide`) and taken out when read, so that a duplicated tab (which copies
 * `sessionStorage`) never resumes, and so takes over, the session of the tab it came from.
 */
export class SessionPersistence {
  constructor(
    readonly storage: StorageLike,
    readonly key: string,
  ) {}

  /** The stored session, removed from the storage (null when there is none or it is unreadable). */
  take(): SessionSnapshot | null {
    try {
      const text = this.storage.getItem(this.key);
      if (text === null) return null;
      this.storage.removeItem(this.key);
      const value = JSON.parse(text) as Partial<SessionSnapshot> | null;
      if (
        value &&
        typeof value.id === "string" &&
        typeof value.token === "string" &&
        Number.isSafeInteger(value.received) &&
        (value.received as number) >= 0
      ) {
        return { id: value.id, token: value.token, received: value.received as number };
      }
    } catch {
      /* storage unavailable (privacy settings) or corrupt: start anew */
    }
    return null;
  }

  save(snapshot: SessionSnapshot | null): void {
    try {
      if (snapshot === null) this.storage.removeItem(this.key);
      else this.storage.setItem(this.key, JSON.stringify(snapshot));
    } catch {
      /* quota or privacy settings: the session is kept in memory only */
    }
  }
}
