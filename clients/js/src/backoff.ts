/**
 * Reconnection decisions, free of I/O: full-jitter backoff, what a close code means, the
 * client's own heartbeat. The same rules as the Python client (asgi_ws/client/policy.py).
 */

/** Reconnection policy; times in seconds. Mutable: a change applies to the next delay. */
export interface BackoffOptions {
  /** The ceiling of the first delay (0.5). */
  base: number;
  /** No delay is ever longer (30). */
  cap: number;
  /** Reconnection attempts in a row before giving up (`Infinity`: never; 0: never reconnect). */
  maxAttempts: number;
  /** Seconds a connection must stay up for the attempt counter to go back to 0 (10). */
  resetAfter: number;
  /** After a 1001/1012 close the first attempt waits at most this (0.25) instead of the backoff. */
  restartJitter: number;
}

export const DEFAULT_BACKOFF: Readonly<BackoffOptions> = Object.freeze({
  base: 0.5,
  cap: 30,
  maxAttempts: Infinity,
  resetAfter: 10,
  restartJitter: 0.25,
});

/** Close codes of a server going away (a drain's 1001) or restarting (1012): come back at once. */
export const RESTART_CODES: ReadonlySet<number> = new Set([1001, 1012]);

/** Close codes after which the client does not come back: 1003, 1007 (a bug to fix), 4403 (revoked), 4409 (session taken over). */
export const STOP_CODES: ReadonlySet<number> = new Set([1003, 1007, 4403, 4409]);

/** 4401: the credentials expired; retried only when a fresh ticket or URL can be fetched. */
export const CREDENTIALS_EXPIRED = 4401;
/** 4404: the server's store lost the session; the next connection starts a new one. */
export const SESSION_LOST = 4404;
/** 4408: heartbeat timeout (sent by the server, or reported by this client when its ping went unanswered). */
export const HEARTBEAT_TIMEOUT = 4408;

/** The longest delay before attempt `attempt` (0-based): `min(cap, base * 2 ** attempt)`. */
export function ceiling(backoff: BackoffOptions, attempt: number): number {
  return Math.min(backoff.cap, backoff.base * 2 ** Math.min(attempt, 64));
}

/** Counts reconnection attempts in a row and draws their delays ("full jitter"). Times in milliseconds. */
export class Attempts {
  /** Reconnection attempts made since the last stable connection. */
  attempt = 0;
  private upSince: number | null = null;

  constructor(
    readonly backoff: BackoffOptions,
    private readonly random: () => number = () => Math.random(),
  ) {}

  /** A connection opened at `now` (ms). */
  connected(now: number): void {
    this.upSince = now;
  }

  /**
   * After a failed attempt or a drop at `now` (ms): seconds to wait before the next attempt,
   * or null to give up. A connection that stayed up `resetAfter` seconds resets the count
   * first; after 1001/1012 the first attempt in a row waits at most `restartJitter`.
   */
  nextDelay(now: number, code?: number): number | null {
    if (this.upSince !== null && now - this.upSince >= this.backoff.resetAfter * 1000) this.attempt = 0;
    this.upSince = null;
    if (this.attempt >= this.backoff.maxAttempts) return null;
    const top =
      code !== undefined && RESTART_CODES.has(code) && this.attempt === 0
        ? this.backoff.restartJitter
        : ceiling(this.backoff, this.attempt);
    const delay = this.random() * top;
    this.attempt += 1;
    return delay;
  }
}

/** What to do after a connection closed: `reconnect`, `end` (a normal close), or `stop` (do not come back). */
export type CloseAction = "reconnect" | "end" | "stop";

/**
 * What to do after a close with `code` (1006 for a drop, or a refused handshake in browsers).
 * `canRefresh`: a fresh ticket or URL can be fetched, so 4401 is retried.
 */
export function closeAction(code: number, options: { canRefresh: boolean; stopCodes?: Iterable<number> }): CloseAction {
  if (code === 1000) return "end";
  if (STOP_CODES.has(code) || new Set(options.stopCodes ?? []).has(code)) return "stop";
  if (code === CREDENTIALS_EXPIRED) return options.canRefresh ? "reconnect" : "stop";
  return "reconnect";
}

export type HeartbeatAction = "wait" | "ping" | "dead";

/**
 * The client's heartbeat (times in ms): ping after `interval` of silence from the server; a
 * ping is answered by any frame arriving after it; none within `timeout` means the connection
 * is dead (half-open: the network dropped without the socket noticing).
 */
export function heartbeatStep(
  now: number,
  state: { lastReceived: number; pingSentAt: number | null; interval: number; timeout: number },
): HeartbeatAction {
  if (state.pingSentAt !== null && state.lastReceived < state.pingSentAt) {
    return now - state.pingSentAt >= state.timeout ? "dead" : "wait";
  }
  return now - state.lastReceived >= state.interval ? "ping" : "wait";
}
