"""Settings of the example project. Environment variables:

REDIS_URL            redis://... shared by every server process: the channel layer, the
                     rooms' broker and the resumable sessions' store (default: in memory,
                     one process)
DJANGO_SECRET_KEY    also signs the resume tokens (every process needs the same)
DJANGO_DEBUG         1 (default) or 0
DJANGO_ALLOWED_HOSTS comma-separated (default: 127.0.0.1,localhost)
DEMO_DB              the SQLite file (default: db.sqlite3 next to this file)
DEMO_USERS           the users created by migrate (default: alice,bob)
DEMO_PASSWORD        their password (default: demo-password)
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-asgi-ws-example-only-0123456789")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "channels",
    "examples.django_channels.chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "examples.django_channels.urls"
ASGI_APPLICATION = "examples.django_channels.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
            ]
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DEMO_DB") or BASE_DIR / "db.sqlite3",
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "index"
LOGOUT_REDIRECT_URL = "login"

# One broker for everything real-time: the channel layer (group_send from Django code), the
# chat rooms (asgi_ws.Rooms) and the resumable sessions' store.
REDIS_URL = os.environ.get("REDIS_URL", "")
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "asgi_ws.contrib.channels.BrokerChannelLayer",
        "CONFIG": {"url": REDIS_URL or "memory://"},
    }
}
# The rooms' broker keeps the last 1,000 messages of each room: a page that reconnects gets the
# room messages it missed, from whichever process it reconnects to.
ASGI_WS_ROOMS_BROKER = f"{REDIS_URL or 'memory://'}{'&' if '?' in REDIS_URL else '?'}history=1000"
ASGI_WS_SESSION_STORE = REDIS_URL or "memory://"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # Refusals and their causes (never a credential), broker and session events.
    "loggers": {"asgi_ws": {"handlers": ["console"], "level": "INFO", "propagate": False}},
}
