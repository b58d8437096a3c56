"""``python -m examples.fastapi_app [--host H] [--port P] [--ws IMPL]``: serve the demo with uvicorn.

Tickets travel in the query string, so uvicorn's log lines are filtered through
asgi_ws's redaction (``asgi_ws.log.uvicorn_log_config``).
"""

from __future__ import annotations

import argparse
import sys

try:
    import fastapi  # noqa: F401 - examples.fastapi_app.main needs it
    import uvicorn
except ModuleNotFoundError as exc:
    sys.exit(f"the FastAPI example needs {exc.name}: scripts/bootstrap demo (or pip install 'asgi-ws[demo]')")

from asgi_ws.log import uvicorn_log_config

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=8000)
parser.add_argument("--ws", default="auto", help="uvicorn WebSocket implementation")
args = parser.parse_args()
uvicorn.run(
    "examples.fastapi_app.main:app", host=args.host, port=args.port, ws=args.ws, log_config=uvicorn_log_config()
)
