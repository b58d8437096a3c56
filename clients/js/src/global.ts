/**
 * The classic script, for `<script src="/asgi-ws.js"></script>`: defines the global `AsgiWs`
 * (the client class), with the package's other exports as its properties (`AsgiWs.AsgiWsError`,
 * `AsgiWs.closeAction`...). No module loader, no dependency.
 */

import { Attempts, ceiling, closeAction, DEFAULT_BACKOFF, heartbeatStep, RESTART_CODES, STOP_CODES } from "./backoff";
import { AsgiWs } from "./client";
import { AsgiWsError } from "./errors";
import { BATCH_PREFIX, decode, encode, isControl, parseDelivery, PREFIX, unpackBatch, VERSION } from "./protocol";
import { SendQueue } from "./queue";
import { ACK_EVERY, ResumeState, SessionPersistence } from "./resume";

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
  VERSION,
});
(globalThis as { AsgiWs?: typeof AsgiWs }).AsgiWs = AsgiWs;
