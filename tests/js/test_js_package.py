"""The JavaScript client package (clients/js): its own tests, the file asgi_ws serves, the npm tarball."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from asgi_ws.static import BROWSER_CLIENT, read
from tests.support.js import prepared, run


def test_the_served_browser_client_is_a_fresh_build_of_clients_js(tmp_path: Path) -> None:
    """One source of truth: asgi_ws/static/asgi-ws.js is the build of clients/js/src, byte for byte."""
    prepared()
    run("node", "build.mjs", "--outdir", str(tmp_path))
    fresh = (tmp_path / BROWSER_CLIENT).read_bytes()
    assert fresh == read(BROWSER_CLIENT), (
        "asgi_ws/static/asgi-ws.js is not the build of clients/js/src: run `npm run build` in clients/js and commit it"
    )
    assert b"Generated from clients/js/src" in fresh[:400]


def test_npm_test_passes() -> None:
    """The type check and the unit tests (node --test: backoff on a fake clock, codec, resume, queue, client)."""
    output = run("npm", "test", cwd=prepared())
    assert "# fail 0" in output, output


def test_npm_pack_makes_a_tarball_that_installs_and_imports_in_node(tmp_path: Path) -> None:
    prepared()
    packed = _pack_json(tmp_path)
    names = {entry["path"] for entry in packed["files"]}
    assert {"dist/asgi-ws.mjs", "dist/asgi-ws.js", "dist/types/index.d.ts", "package.json"} <= names, names
    assert not any(name.startswith(("src/", "test/", "node_modules/")) for name in names), names
    project = tmp_path / "app"
    project.mkdir()
    (project / "package.json").write_text(json.dumps({"name": "app", "private": True, "type": "module"}))
    tarball = str(tmp_path / packed["filename"])
    run("npm", "install", "--prefer-offline", "--no-audit", "--no-fund", tarball, cwd=project)
    installed = json.loads((project / "package.json").read_text())
    assert "asgi-ws" in installed["dependencies"]
    assert not (project / "node_modules" / "ws").exists(), "ws is an optional peer dependency, never installed"
    script = (
        'import { AsgiWs, closeAction } from "asgi-ws";'
        'import def from "asgi-ws";'
        "const c = new AsgiWs('ws://127.0.0.1:9/ws');"
        "console.log(JSON.stringify([typeof AsgiWs, def === AsgiWs, c.state, closeAction(4409, {canRefresh: false})]));"
    )
    output = run("node", "--input-type=module", "-e", script, cwd=project)
    assert json.loads(output.strip().splitlines()[-1]) == ["function", True, "idle", "stop"]
    classic = project / "node_modules" / "asgi-ws" / "dist" / "asgi-ws.js"
    assert classic.read_bytes() == read(BROWSER_CLIENT)


def _pack_json(destination: Path) -> dict[str, Any]:
    """``npm pack --json`` (its prepack builds first) and the tarball's description."""
    output = run("npm", "pack", "--json", "--pack-destination", str(destination))
    start = output.index("[\n")  # the build's own output may come first
    described: list[dict[str, Any]] = json.loads(output[start : output.rindex("]") + 1])
    return described[0]
