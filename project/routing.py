"""WebSocket routes of the demo project."""

from django.urls import path

from secure_ws.contrib.files.consumer import FileEventConsumer

websocket_urlpatterns = [
    path("ws/files/", FileEventConsumer.as_asgi()),
]
