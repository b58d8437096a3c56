from __future__ import annotations

import os
from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def seed_demo_users(**kwargs: Any) -> None:
    """Create the demo users once, after ``migrate``: ``DEMO_USERS`` (default ``alice,bob``),
    password ``DEMO_PASSWORD`` (default ``demo-password``)."""
    from django.contrib.auth import get_user_model

    model = get_user_model()
    for username in filter(None, os.environ.get("DEMO_USERS", "alice,bob").split(",")):
        if not model.objects.filter(username=username).exists():
            model.objects.create_user(username, password=os.environ.get("DEMO_PASSWORD", "demo-password"))


class ChatConfig(AppConfig):
    name = "examples.django_channels.chat"
    label = "chat"

    def ready(self) -> None:
        from django.apps import apps

        # This app has no models (Django sends it no post_migrate): seed once auth's tables exist.
        post_migrate.connect(seed_demo_users, sender=apps.get_app_config("auth"), dispatch_uid="chat.seed")
