/** Which WebSocket the client uses: the one passed in, the platform's, or the `ws` package on Node.js < 22. */

import { AsgiWsError } from "./errors";

/** What the client needs of a WebSocket: the WHATWG API (browsers, Node.js 22+, undici) or the `ws` package. */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  binaryType: string;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string | ArrayBufferLike | ArrayBufferView | Blob): void;
  close(code?: number, reason?: string): void;
  /** `ws` only: drop the connection at once, without a closing handshake. */
  terminate?(): void;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** readyState of an open socket (WebSocket.OPEN, which Node.js has no global for). */
export const OPEN = 1;

let fallback: (() => Promise<WebSocketConstructor>) | null = null;

/** The ES module build registers how to load the `ws` package; the classic script (browsers) does not need it. */
export function setWebSocketFallback(loader: (() => Promise<WebSocketConstructor>) | null): void {
  fallback = loader;
}

export async function resolveWebSocket(explicit?: WebSocketConstructor): Promise<WebSocketConstructor> {
  if (explicit) return explicit;
  const native = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (typeof native === "function") return native;
  if (fallback !== null) {
    try {
      return await fallback();
    } catch {
      /* not installed: said below */
    }
  }
  throw new AsgiWsError(
    "no_websocket",
    "asgi_ws: no WebSocket here: on Node.js 20 and 21 install the ws package (npm install ws), " +
      "run with --experimental-websocket, or pass options.WebSocket",
  );
}
