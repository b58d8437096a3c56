"""``python -m examples.fastapi_app [--host H] [--port P] [--ws IMPL]``: serve the demo with uvicorn.

Tickets travel in the query string, so uvicorn's log lines are filtered through
asgi_ws's redaction (``asgi_ws.log.uvicorn_log_config``).
"""

from __future__ import annotations

import sys

try:
    import fastapi  # noqa: F401 - examples.fastapi_app.main needs it
    import uvicorn  # noqa: F401 - examples._serve runs it
except ModuleNotFoundError as exc:
    sys.exit(f"the FastAPI example needs {exc.name}: scripts/bootstrap demo (or pip install 'asgi-ws[demo]')")

from examples._serve import serve

serve("examples.fastapi_app.main:app", __doc__)
