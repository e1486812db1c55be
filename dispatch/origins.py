"""Origin check for ``/ws/session``: a browser whose ``Origin`` is not in ``ALLOWED_ORIGINS``
(or in its tenant's own allowed origins, when the tenant has any) is refused at the handshake
(HTTP 403); a request without ``Origin`` (not a browser) passes."""

from __future__ import annotations

from typing import Any

from channels.security.websocket import WebsocketDenier
from django.conf import settings


def origin_allowed(origin: str | None, allowed: list[str] | tuple[str, ...] = ()) -> bool:
    """``allowed``: the tenant's origins, which replace ``ALLOWED_ORIGINS`` when given."""
    allowed = allowed or settings.ALLOWED_ORIGINS
    return origin is None or "*" in allowed or origin.rstrip("/") in allowed


class SessionOriginCheck:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        origin = next(
            (value.decode("latin-1") for name, value in scope.get("headers", []) if name == b"origin"), None
        )
        access = scope.get("session_access")
        if not origin_allowed(origin, access.origins if access is not None else ()):
            return await WebsocketDenier.as_asgi()(scope, receive, send)
        return await self.inner(scope, receive, send)
