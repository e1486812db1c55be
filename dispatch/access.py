"""Who opens a browser session, and whose quota it counts against (docs/protocol.md, tenants).

``SessionAccessMiddleware`` runs before the handshake of ``/ws/session``: with
``SCHEDULER_SESSION_AUTH=open`` every session is the built-in tenant ``public``'s; with
``ticket`` it reads the access ticket (query ``access_token``, ``Authorization: Bearer``, or the
cookie ``scheduler_access_token``), looks its key up in live state (no database query) and
verifies it. It puts an ``Access`` in the scope: the origin check uses the tenant's own origins,
and the consumer refuses a bad ticket after the handshake (``error UNAUTHORIZED``, close 4401).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

import redis
from django.conf import settings

from dispatch.protocol import CloseCode, ErrorCode
from dispatch.tenants import key_published, tenant_published
from tenants import sealing, tickets
from tenants.models import PUBLIC

log = logging.getLogger("dispatch.sessions")

TICKET_QUERY = "access_token"
TICKET_COOKIE = "scheduler_access_token"
REFUSALS = {  # session_open.lua's refusals at session_init: the error, its sentence, the close code
    "revoked": (ErrorCode.UNAUTHORIZED, "Your access ticket's key was revoked.", CloseCode.UNAUTHORIZED),
    "disabled": (ErrorCode.UNAUTHORIZED, "Your tenant is disabled.", CloseCode.UNAUTHORIZED),
    "quota": (
        ErrorCode.QUOTA_EXCEEDED,
        "Your tenant has as many sessions open as it may (max_sessions); close one and try again.",
        CloseCode.QUOTA,
    ),
}


@dataclass(frozen=True)
class Access:
    """A session socket's tenant and what its ticket allows; ``refusal`` says why it may not
    open a session at all (sent with ``refusal_code``, then the socket closes)."""

    tenant: str = PUBLIC
    key_id: str = ""
    sub: str = ""
    pairs: frozenset[str] | None = None
    origins: tuple[str, ...] = ()
    refusal: str | None = None
    store_down: bool = False

    def allows(self, src: str, tgt: str) -> bool:
        return self.pairs is None or f"{src}-{tgt}" in self.pairs


OPEN = Access()


def presented_ticket(scope: dict[str, Any]) -> str | None:
    """The ticket from the query, else the ``Authorization`` header, else the cookie."""
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if query.get(TICKET_QUERY):
        return query[TICKET_QUERY][0].strip() or None
    cookie_header = None
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            kind, _, credential = value.decode("latin-1").partition(" ")
            if kind.lower() == "bearer" and credential.strip():
                return credential.strip()
        elif name == b"cookie":
            cookie_header = value.decode("latin-1")
    if cookie_header:
        cookies: SimpleCookie = SimpleCookie()
        try:
            cookies.load(cookie_header)
        except Exception:  # a malformed cookie header is no ticket
            return None
        morsel = cookies.get(TICKET_COOKIE)
        if morsel is not None and morsel.value:
            return morsel.value
    return None


def _refused(message: str) -> Access:
    return Access(tenant="", refusal=message)


async def _ticket_access(ticket: str | None) -> Access:
    if not ticket:
        return _refused(
            "This server needs an access ticket: pass it as ?access_token=, an Authorization: Bearer "
            "header, or the scheduler_access_token cookie."
        )
    try:
        key_id = tickets.ticket_key_id(ticket)
    except tickets.TicketRefused as refused:
        return _refused(refused.message)
    key = await key_published(key_id)
    if key is None:
        return _refused(f"The access ticket's key {key_id[:40]} is unknown or revoked.")
    try:
        claims = tickets.ticket_verify(ticket, secret=sealing.unseal(key["secret"]))
    except tickets.TicketRefused as refused:
        return _refused(refused.message)
    except sealing.UnreadableSecret:
        log.error("a tenant key cannot be read: is SECRET_KEY the same on every process?", extra={"code": key_id})
        return _refused(f"The access ticket's key {key_id} cannot be checked by this server.")
    record = await tenant_published(key["tenant"])
    if record is None or record.get("enabled") is False:
        return _refused(f"The tenant {key['tenant']} is disabled.")
    return Access(
        tenant=key["tenant"], key_id=key_id, sub=claims.sub or "", pairs=claims.pairs,
        origins=tuple(record.get("origins") or ()),
    )


async def access_of(scope: dict[str, Any]) -> Access:
    """The socket's access: one or two reads of live state, no database query."""
    try:
        if settings.SCHEDULER_SESSION_AUTH == "ticket":
            return await _ticket_access(presented_ticket(scope))
        record = await tenant_published(PUBLIC)
    except (redis.ConnectionError, redis.TimeoutError):
        if settings.SCHEDULER_SESSION_AUTH == "ticket":
            return Access(tenant="", refusal="The scheduler's store is unreachable; please retry shortly.", store_down=True)
        return OPEN  # open mode keeps working through an outage, as before tenants existed
    return Access(origins=tuple(record.get("origins") or ())) if record else OPEN


class SessionAccessMiddleware:
    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        scope = dict(scope)
        scope["session_access"] = await access_of(scope)
        return await self.inner(scope, receive, send)
