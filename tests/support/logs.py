"""Scan what a real server logged: no refusal, policy close or hostile input may log an ERROR.

Serve the app with ``log_config=None`` (uvicorn then leaves logging alone and its records
propagate to the root logger), and wrap the test in :func:`no_server_errors`: every record
at ERROR or above, and every record carrying a traceback, from any logger (``uvicorn.error``'s
"Exception in ASGI application", asyncio's "Task exception was never retrieved", asgi_ws's
own), fails the test with what was logged.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def is_error(record: logging.LogRecord) -> bool:
    """An ERROR (or worse) record, or any record with a traceback."""
    return record.levelno >= logging.ERROR or record.exc_info is not None


def describe(records: list[logging.LogRecord]) -> str:
    formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    return "\n".join(formatter.format(record) for record in records)


@contextlib.contextmanager
def captured_logs(level: int = logging.INFO) -> Iterator[list[logging.LogRecord]]:
    """Collect the records of every logger at ``level`` and above while the block runs."""
    root = logging.getLogger()
    handler = _Collect()
    handler.setLevel(level)
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(min(old_level or logging.WARNING, level))
    try:
        yield handler.records
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@contextlib.contextmanager
def no_server_errors(level: int = logging.INFO) -> Iterator[list[logging.LogRecord]]:
    """Fail when anything logged an error or a traceback while the block ran; yields every record."""
    with captured_logs(level) as records:
        yield records
    errors = [record for record in records if is_error(record)]
    assert not errors, f"the server logged errors:\n{describe(errors)}"


__all__ = ["captured_logs", "describe", "is_error", "no_server_errors"]
