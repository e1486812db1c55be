"""``POST /api/tickets``: a tenant's backend mints an access ticket for one of its users.

``Authorization: Bearer <key_id>:<secret>``, optional JSON body ``{sub?, ttl_s?, pairs?}`` →
201 ``{ticket, expires_at, tenant}``; a bad key → 401, a disabled tenant → 403, a bad body → 400.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from tenants import tickets
from tenants.services import BadKey, TenantDisabled, key_authenticate, key_ticket


def _problem(status: int, message: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="tickets"'
    return response


def _body(request: HttpRequest) -> dict[str, Any]:
    if not request.body.strip():
        return {}
    body = json.loads(request.body)
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    sub, ttl_s, pairs = body.get("sub"), body.get("ttl_s", tickets.DEFAULT_TTL_S), body.get("pairs")
    if sub is not None and not isinstance(sub, str):
        raise ValueError("sub must be a string")
    if not isinstance(ttl_s, int) or isinstance(ttl_s, bool) or not 1 <= ttl_s <= tickets.MAX_TTL_S:
        raise ValueError(f"ttl_s must be a whole number of seconds from 1 to {tickets.MAX_TTL_S}")
    if pairs is not None and not (isinstance(pairs, list) and all(isinstance(p, str) and "-" in p for p in pairs)):
        raise ValueError('pairs must be a list of "src-tgt" strings')
    return {"sub": sub, "ttl_s": ttl_s, "pairs": pairs}


@csrf_exempt
@require_POST
def tickets_create(request: HttpRequest) -> JsonResponse:
    kind, _, credential = request.headers.get("Authorization", "").partition(" ")
    if kind.lower() != "bearer" or ":" not in credential:
        return _problem(401, "Send the key as Authorization: Bearer <key_id>:<secret>.")
    try:
        key = key_authenticate(credential.strip())
    except BadKey:
        return _problem(401, "Unknown or revoked key, or a wrong secret.")
    except TenantDisabled as disabled:
        return _problem(403, f"Tenant {disabled} is disabled.")
    try:
        wanted = _body(request)
    except ValueError as error:
        return _problem(400, str(error))
    ticket, expires_at = key_ticket(key=key, **wanted)
    return JsonResponse({"ticket": ticket, "expires_at": expires_at, "tenant": key.tenant.name}, status=201)
