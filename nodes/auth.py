"""Node authentication for ``/ws/node``: ``?token=`` in the URL or ``Authorization: Bearer``.

The middleware only looks the token up (at connect, the one database query of a node socket)
and puts ``node_token_id`` in the scope; the consumer closes with 4401 when it is missing.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings

from nodes.tokens import token_authenticate

OPEN_TOKEN = "open"


def presented_token(scope: dict[str, Any]) -> str | None:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if query.get("token"):
        return query["token"][0]
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            kind, _, credential = value.decode("latin-1").partition(" ")
            if kind.lower() == "bearer" and credential.strip():
                return credential.strip()
    return None


class NodeTokenMiddleware:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        scope = dict(scope)
        plaintext = presented_token(scope)
        token = await database_sync_to_async(token_authenticate)(plaintext) if plaintext else None
        scope["node_tenant"] = token.tenant.name if token is not None and token.tenant is not None else ""
        if token is not None:
            scope["node_token_id"] = str(token.pk)
        elif settings.SCHEDULER_NODE_AUTH == "open":
            scope["node_token_id"] = OPEN_TOKEN
        else:
            scope["node_token_id"] = None
        return await self.inner(scope, receive, send)
