"""Django views: a signed ticket for the logged-in user, and the browser client.

::

    # urls.py
    from asgi_ws.contrib.channels.views import asgi_ws_js, ticket_view

    urlpatterns = [
        path("ws-ticket", ticket_view(tickets)),
        path("asgi-ws.js", asgi_ws_js),
    ]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any

from ...auth.tickets import SignedTicket
from .auth import issue_ticket


def ticket_view(tickets: SignedTicket, *, scopes: Iterable[str] = ()) -> Callable[[Any], Any]:
    """A view answering ``{"ticket": ..., "max_age": ...}`` for the logged-in user (GET or POST).

    The ticket names the user by primary key: verify it with
    ``SignedTicket(keys, load_user=load_django_user)`` so that ``scope["user"]`` is the Django
    user. An anonymous request gets 401 ``{"error": "not logged in"}``. The response is never
    cached. The request is authenticated the way the rest of the site is (Django's
    ``AuthenticationMiddleware``); POST goes through ``CsrfViewMiddleware`` as usual.
    """
    granted = tuple(scopes)

    def view(request: Any) -> Any:
        from django.http import JsonResponse  # type: ignore[import-untyped]

        if request.method not in ("GET", "POST"):
            response = JsonResponse({"error": "method not allowed"}, status=405)
            response["Allow"] = "GET, POST"
        elif not request.user.is_authenticated:
            response = JsonResponse({"error": "not logged in"}, status=401)
        else:
            ticket = issue_ticket(tickets, request.user, scopes=granted)
            response = JsonResponse({"ticket": ticket, "max_age": tickets.max_age})
        response["Cache-Control"] = "no-store"
        return response

    return view


_CLIENT: bytes | None = None


def asgi_ws_js(request: Any) -> Any:
    """The browser client (``asgi_ws/static/asgi-ws.js``), served from the installed package."""
    from django.http import HttpResponse

    global _CLIENT
    if _CLIENT is None:
        _CLIENT = (resources.files("asgi_ws.static") / "asgi-ws.js").read_bytes()
    return HttpResponse(_CLIENT, content_type="text/javascript; charset=utf-8")


__all__ = ["asgi_ws_js", "ticket_view"]
