"""``python -m examples.sse_app [--host H] [--port P]``: serve the Server-Sent Events example.

Open http://127.0.0.1:8000/ (the page follows a room with ``EventSource`` and publishes with
``fetch``), or ``curl -N http://127.0.0.1:8000/rooms/lobby/events`` and, in another shell,
``curl -d '{"text": "hi"}' -H 'Content-Type: application/json' http://127.0.0.1:8000/rooms/lobby/messages``.
"""

from __future__ import annotations

import sys

try:
    import fastapi  # noqa: F401 - examples.sse_app.main needs it
    import uvicorn  # noqa: F401 - examples._serve runs it
except ModuleNotFoundError as exc:
    sys.exit(f"the SSE example needs {exc.name}: scripts/bootstrap demo (or pip install 'asgi-ws[demo]')")

from examples._serve import serve

serve("examples.sse_app.main:app", __doc__)
