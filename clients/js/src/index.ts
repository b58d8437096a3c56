/**
 * asgi-ws: the client for asgi_ws endpoints, as an ES module (browsers, bundlers, Node.js 20+).
 *
 *   import { AsgiWs } from "asgi-ws";
 *   const client = new AsgiWs("wss://example.com/ws");
 *   client.on("message", ({ channel, data }) => console.log(channel, data));
 *   await client.connect().subscribe("news");
 *
 * On Node.js 20 and 21 (no global WebSocket without --experimental-websocket) it loads the
 * optional `ws` package; `options.WebSocket` picks any other implementation.
 */

import { setWebSocketFallback, type WebSocketConstructor } from "./websocket";

setWebSocketFallback(async () => {
  const mod = (await import(/* webpackIgnore: true */ /* @vite-ignore */ "ws")) as {
    WebSocket?: WebSocketConstructor;
    default?: WebSocketConstructor;
  };
  const WebSocketClass = mod.WebSocket ?? mod.default;
  if (typeof WebSocketClass !== "function") throw new Error("the ws package exports no WebSocket");
  return WebSocketClass;
});

export { AsgiWs, AsgiWs as default } from "./client";
export type {
  AsgiWsOptions,
  Clock,
  Data,
  PersistOptions,
  PublishOptions,
  SubscribeOptions,
  TicketSource,
  UrlSource,
} from "./client";
export {
  Attempts,
  type BackoffOptions,
  ceiling,
  type CloseAction,
  closeAction,
  DEFAULT_BACKOFF,
  type HeartbeatAction,
  heartbeatStep,
  RESTART_CODES,
  STOP_CODES,
} from "./backoff";
export { AsgiWsError, type ErrorCode } from "./errors";
export type {
  AsgiWsEventMap,
  CloseDetail,
  ConnectionState,
  ErrorMessage,
  EventName,
  Handler,
  ReconnectingDetail,
  ResumedMessage,
  ResumeFailedMessage,
} from "./events";
export {
  BATCH_PREFIX,
  type ControlMessage,
  decode,
  type Delivery,
  encode,
  isControl,
  parseDelivery,
  PREFIX,
  unpackBatch,
  VERSION,
} from "./protocol";
export { type BufferPolicy, type PushResult, SendQueue } from "./queue";
export { ACK_EVERY, ResumeState, SessionPersistence, type SessionSnapshot, type StorageLike } from "./resume";
export type { WebSocketConstructor, WebSocketLike } from "./websocket";
