// Builds the client from src/ (TypeScript) with esbuild, deterministically:
//   dist/asgi-ws.mjs   the ES module (the package's entry point; Node.js 20+, bundlers, <script type="module">)
//   dist/asgi-ws.js    the classic script defining the global AsgiWs (<script src>); with --served also
//                      written to ../../asgi_ws/static/asgi-ws.js, the file the Python package serves at
//                      /asgi-ws.js (committed: `npm run build` does it)
// Usage: node build.mjs [--outdir DIR] [--served]
// tests/js/test_js_package.py builds into a temporary --outdir and compares with asgi_ws/static/asgi-ws.js.
// The type declarations (dist/types) come from `tsc` (npm run build runs both).
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const at = args.indexOf("--outdir");
const outdir = at >= 0 ? args[at + 1] : join(here, "dist");
if (!outdir) throw new Error("--outdir needs a directory");
const { version } = JSON.parse(readFileSync(join(here, "package.json"), "utf8"));

const banner = `/*!
 * asgi-ws ${version}: the client for asgi_ws endpoints (docs/client.md, docs/protocol.md). MIT License.
 * Generated from clients/js/src by \`npm run build\`: do not edit; edit the TypeScript and build.
 */`;
const common = {
  bundle: true,
  write: false,
  target: "es2020",
  charset: "utf8",
  legalComments: "none",
  banner: { js: banner },
  logLevel: "warning",
};

const outputs = [
  ["asgi-ws.mjs", { ...common, entryPoints: [join(here, "src/index.ts")], format: "esm", external: ["ws"], platform: "neutral" }],
  ["asgi-ws.js", { ...common, entryPoints: [join(here, "src/global.ts")], format: "iife", platform: "browser" }],
];

mkdirSync(outdir, { recursive: true });
for (const [name, options] of outputs) {
  const result = await build(options);
  const text = result.outputFiles[0].text;
  writeFileSync(join(outdir, name), text);
  if (name === "asgi-ws.js" && args.includes("--served")) {
    const served = join(here, "..", "..", "asgi_ws", "static");
    if (!existsSync(served)) throw new Error(`--served: no ${served} (run it in the asgi_ws repository)`);
    writeFileSync(join(served, name), text);
  }
}
