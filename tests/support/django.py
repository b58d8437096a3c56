"""The one Django configuration of the test suite (Django settings are process-wide).

Every test module that needs Django calls :func:`setup` before importing Channels or Django
models; whichever module is collected first configures Django, so this configuration is
the union of what the modules need. Extend ``SETTINGS`` here, never configure elsewhere.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import tempfile
from typing import Any

#: A file database of this process: its connections close for real (Django ignores close()
#: on in-memory SQLite), for the tests of when connections are closed.
FILES_DB = os.path.join(tempfile.gettempdir(), f"asgi_ws_tests_{os.getpid()}.sqlite3")

SETTINGS: dict[str, Any] = {
    "INSTALLED_APPS": [
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "channels",
    ],
    "SECRET_KEY": "test-only-0123456789",
    "USE_TZ": True,
    # One in-memory database shared by every thread of the process (database_sync_to_async
    # runs queries in worker threads; a plain ":memory:" database is one per connection).
    "DATABASES": {
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "file:asgi_ws_tests?mode=memory&cache=shared"},
        "files": {"ENGINE": "django.db.backends.sqlite3", "NAME": FILES_DB},
    },
    "SESSION_ENGINE": "django.contrib.sessions.backends.signed_cookies",
    "CHANNEL_LAYERS": {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
    "DEFAULT_AUTO_FIELD": "django.db.models.AutoField",
}


def setup() -> None:
    """Configure Django for the tests, once per process."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(**SETTINGS)
        django.setup()
        atexit.register(_remove_files_db)


def _remove_files_db() -> None:
    with contextlib.suppress(OSError):
        os.remove(FILES_DB)


__all__ = ["SETTINGS", "setup"]
