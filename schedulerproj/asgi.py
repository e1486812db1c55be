"""HTTP (Django) and the WebSocket routes: /ws/node, /ws/session, /ws/dashboard (each with or
without a slash)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "schedulerproj.settings")
django_application = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from dispatch.access import SessionAccessMiddleware  # noqa: E402
from dispatch.consumers import SessionConsumer  # noqa: E402
from dispatch.origins import SessionOriginCheck  # noqa: E402
from nodes.auth import NodeTokenMiddleware  # noqa: E402
from nodes.consumers import NodeConsumer  # noqa: E402
from nodes.dashboard import DashboardConsumer, SameOriginOnly  # noqa: E402

websocket_routes = URLRouter(
    [
        re_path(r"^ws/node/?$", NodeTokenMiddleware(NodeConsumer.as_asgi())),
        re_path(r"^ws/session/?$", SessionAccessMiddleware(SessionOriginCheck(SessionConsumer.as_asgi()))),
        re_path(r"^ws/dashboard/?$", SameOriginOnly(AuthMiddlewareStack(DashboardConsumer.as_asgi()))),
    ]
)

application = ProtocolTypeRouter({"http": django_application, "websocket": websocket_routes})
