/**
 * The asgi_ws control protocol's framing (docs/protocol.md §1): a control message is a text
 * frame holding a JSON object whose first member is `"$ws"`; everything else is a data frame
 * for the application (and counts for session resumption, §9).
 */

/** How every control frame starts. */
export const PREFIX = '{"$ws"';
/** The protocol version this client speaks (sent in `hello`). */
export const VERSION = 1;
/** How every batch frame starts (docs/protocol.md, "Batches"). */
export const BATCH_PREFIX = '{"$ws":"batch","m":[';

/** A decoded control message: `{"$ws": op, ...fields}`. */
export interface ControlMessage {
  $ws: string;
  [field: string]: unknown;
}

/** A pub/sub delivery (§7): `{"channel", "data"}`, or `{"channel", "binary": "<base64>"}` for bytes published by server code. */
export interface Delivery {
  channel: string;
  data?: unknown;
  binary?: string;
}

/** Whether `data` is a control frame (only text frames starting with `{"$ws"` are). */
export function isControl(data: unknown): data is string {
  return typeof data === "string" && data.startsWith(PREFIX);
}

/** The control frame of operation `op` with `fields` (`"$ws"` first, as the server requires). */
export function encode(op: string, fields?: Record<string, unknown>): string {
  const message: Record<string, unknown> = { $ws: op };
  for (const key in fields) if (key !== "$ws") message[key] = fields[key];
  return JSON.stringify(message);
}

/** The control message in `text`, or null when it is not one (not control, malformed JSON, no operation). */
export function decode(text: unknown): ControlMessage | null {
  if (!isControl(text)) return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) return null;
  const op = (value as { $ws?: unknown }).$ws;
  return typeof op === "string" && op.length > 0 ? (value as ControlMessage) : null;
}

/**
 * The text messages a decoded batch frame carries (`{"$ws":"batch","m":[...]}`), in order; null
 * when it holds something else than a list of strings.
 */
export function unpackBatch(message: ControlMessage): string[] | null {
  const texts = message.m;
  if (!Array.isArray(texts)) return null;
  for (const text of texts) if (typeof text !== "string") return null;
  return texts as string[];
}

/** The delivery in a data frame, or null when the frame is something else (binary, other text). */
export function parseDelivery(data: unknown): Delivery | null {
  if (typeof data !== "string" || !data.startsWith('{"channel"')) return null;
  try {
    const value: unknown = JSON.parse(data);
    if (value !== null && typeof value === "object" && typeof (value as Delivery).channel === "string") {
      return value as Delivery;
    }
  } catch {
    /* not a delivery after all */
  }
  return null;
}

/** Whether `data` is bytes (which `publish()` refuses: JSON would mangle them). */
export function isBinary(data: unknown): boolean {
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) return true;
  const blob = (globalThis as { Blob?: new (...args: never[]) => unknown }).Blob;
  return typeof blob === "function" && data instanceof blob;
}
