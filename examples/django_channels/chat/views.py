from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

ROOMS = ("lobby", "random", "django")


@login_required
def index(request: Any) -> Any:
    return render(request, "chat/index.html", {"rooms": ROOMS})


@login_required
def room(request: Any, room: str) -> Any:
    return render(request, "chat/room.html", {"room": room, "rooms": ROOMS})


@login_required
@require_POST
def announce(request: Any) -> Any:
    """Tell every connected page, in every room: a group_send on the channel layer."""
    text = request.POST.get("text", "").strip()[:200]
    if text:
        message = {"type": "announce", "user": request.user.get_username(), "text": text}
        async_to_sync(get_channel_layer().group_send)("announcements", message)
    return HttpResponse(status=204)
