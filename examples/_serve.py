"""What the examples' ``python -m`` entry points share: ``--host``, ``--port``, ``--ws``, and
uvicorn with asgi_ws's log redaction (tickets travel in the query string)."""

from __future__ import annotations

import argparse


def serve(app: str, description: str | None) -> None:
    """Parse the command line and run ``app`` (an import string) with uvicorn."""
    import uvicorn

    from asgi_ws.log import uvicorn_log_config

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--ws", default="auto", help="uvicorn WebSocket implementation")
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, ws=args.ws, log_config=uvicorn_log_config())
