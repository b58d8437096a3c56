// On Node.js without a global WebSocket (20 and 21), the ES module loads the optional ws package.
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { test } from "node:test";
import { AsgiWs } from "../dist/asgi-ws.mjs";

test("Node.js: a WebSocket is found (the global one, or the ws package) and a refused connection is retried", async () => {
  const server = createServer((socket) => socket.destroy()); // accepts TCP, then drops it: no handshake
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  const client = new AsgiWs(`ws://127.0.0.1:${port}/ws`, { backoff: { base: 0.01, maxAttempts: 2 } });
  const seen = [];
  const gaveUp = new Promise((resolve) => client.on("giveup", resolve));
  client.on("close", ({ code }) => seen.push(code));
  client.connect();
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error("no giveup within 10 s")), 10_000).unref());
  await Promise.race([gaveUp, timeout]);
  server.close();
  assert.deepEqual(seen, [1006, 1006, 1006]);
  assert.equal(client.state, "closed");
});
