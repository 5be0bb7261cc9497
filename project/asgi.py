"""ASGI entry point of the demo: HTTP through Django, WebSockets through the secure_ws gate."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from project.routing import websocket_urlpatterns  # noqa: E402
from secure_ws import secure_websocket  # noqa: E402
from secure_ws.shutdown import lifespan  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": secure_websocket(URLRouter(websocket_urlpatterns)),
        # uvicorn --lifespan on: the audit trail is flushed at shutdown (daphne ignores it).
        "lifespan": lifespan,
    }
)
