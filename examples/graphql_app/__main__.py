"""``python -m examples.graphql_app [--host H] [--port P] [--ws IMPL]``: serve the GraphQL example.

GraphiQL is at http://127.0.0.1:8000/graphql (queries over HTTP; subscriptions need a ticket:
``POST /ticket?name=alice``, then ``ws://127.0.0.1:8000/graphql?ticket=...``). Tickets travel
in the query string, so uvicorn's log lines are filtered through asgi_ws's redaction.
"""

from __future__ import annotations

import sys

try:
    import strawberry  # noqa: F401 - examples.graphql_app.main needs it
except ModuleNotFoundError as exc:
    sys.exit(f"the GraphQL example needs {exc.name}: pip install 'asgi-ws[graphql]'")

from examples._serve import serve

serve("examples.graphql_app.main:app", __doc__)
