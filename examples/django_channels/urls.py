from django.urls import include, path

from asgi_ws.contrib.channels.views import asgi_ws_js

from .chat import views

urlpatterns = [
    path("", views.index, name="index"),
    path("chat/<slug:room>/", views.room, name="room"),
    path("announce/", views.announce, name="announce"),
    path("asgi-ws.js", asgi_ws_js, name="asgi-ws.js"),
    path("accounts/", include("django.contrib.auth.urls")),
]
