/** Errors the client rejects promises with (and throws), with a `code` a program can test. */

export type ErrorCode =
  | "buffer_full" // the send queue is full (maxBuffered) and its policy refused the message
  | "interrupted" // the connection dropped before the server answered; a publish may or may not have happened
  | "dropped" // the server answered a later request first: this one was dropped (rate limit)
  | "closed" // close() was called, or the client stopped for good
  | "no_websocket" // no WebSocket implementation (Node.js 20 without the ws package)
  | string; // a refusal from the server: forbidden, too_large, too_many_subscriptions, unknown_op...

export class AsgiWsError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** The operation the error is about (`publish`, `subscribe`...), when there is one. */
    readonly ref?: string,
  ) {
    super(message);
    this.name = "AsgiWsError";
  }
}
