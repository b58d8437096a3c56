"""``python -m examples.graphql_app [--host H] [--port P] [--ws IMPL]``: serve the GraphQL example.

GraphiQL is at http://127.0.0.1:8000/graphql (queries over HTTP; subscriptions need a ticket:
``POST /ticket?name=alice``, then ``ws://127.0.0.1:8000/graphql?ticket=...``). Tickets travel
in the query string, so uvicorn's log lines are filtered through asgi_ws's redaction.
"""

from __future__ import annotations

import argparse

import uvicorn

from asgi_ws.log import uvicorn_log_config

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=8000)
parser.add_argument("--ws", default="auto", help="uvicorn WebSocket implementation")
args = parser.parse_args()
uvicorn.run(
    "examples.graphql_app.main:app", host=args.host, port=args.port, ws=args.ws, log_config=uvicorn_log_config()
)
