// The JavaScript client in Node.js, driven by tests/browser/test_interop.py over stdin/stdout (JSON lines).
// Usage: node interop_client.mjs <path of asgi-ws.mjs> <channel> <ws url>...
//   stdout: {"event": "ready"} once subscribed, {"event": "message", "data": ...} for each delivery,
//           {"event": "published", "data": ...} once the server confirmed a publish, and the client's
//           "close", "resumed", "resume_failed" events.
//   stdin:  {"op": "publish", "data": ...} | {"op": "close"}
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";

const [modulePath, channel, ...urls] = process.argv.slice(2);
const { AsgiWs } = await import(pathToFileURL(modulePath).href);
const say = (message) => process.stdout.write(`${JSON.stringify(message)}\n`);

const client = new AsgiWs(urls, { pingInterval: 2, pingTimeout: 2, backoff: { base: 0.05, cap: 0.3 } });
client.on("message", ({ data }) => say({ event: "message", data }));
client.on("close", ({ code, reason }) => say({ event: "close", code, reason }));
client.on("resumed", ({ replay }) => say({ event: "resumed", replay }));
client.on("resume_failed", ({ code }) => say({ event: "resume_failed", code }));
client.connect();
await client.subscribe(channel);
say({ event: "ready", websocket: typeof globalThis.WebSocket === "function" ? "global" : "ws package" });

for await (const line of createInterface({ input: process.stdin })) {
  const command = JSON.parse(line);
  if (command.op === "publish") {
    await client.publish(channel, command.data);
    say({ event: "published", data: command.data });
  } else if (command.op === "close") {
    client.close();
    break;
  }
}
process.exit(0);
