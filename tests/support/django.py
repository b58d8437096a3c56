"""The one Django configuration of the test suite (Django settings are process-wide).

Every test module that needs Django calls :func:`setup` before importing Channels or Django
models; whichever module is collected first configures Django, so this configuration is
the union of what the modules need. Extend ``SETTINGS`` here, never configure elsewhere.
"""

from __future__ import annotations

from typing import Any

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
        "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "file:asgi_ws_tests?mode=memory&cache=shared"}
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


__all__ = ["SETTINGS", "setup"]
