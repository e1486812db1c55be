"""Tenants for tests: a tenant with a key, published to live state, and tickets signed with it
(or tampered with) for the refusals of docs/protocol.md, tenants."""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import jwt


@dataclass
class Customer:
    """A tenant and one of its keys, as its backend holds them."""

    name: str
    key_id: str
    secret: str

    @property
    def credential(self) -> str:
        return f"{self.key_id}:{self.secret}"

    def ticket(self, *, ttl_s: int = 300, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iat": now, "exp": now + ttl_s} | {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(payload, self.secret, algorithm="HS256", headers={"kid": self.key_id})


def customer_create(
    name: str, *, max_sessions: int | None = None, audio_minutes: str | None = None, origins: str = ""
) -> Customer:
    """A tenant with a key (committed, so the change is published to live state at once)."""
    from dispatch.tenants import tenants_publish
    from tenants.services import tenant_create, tenant_key_create

    tenant = tenant_create(
        name=name, max_sessions=max_sessions,
        audio_minutes_per_day=Decimal(audio_minutes) if audio_minutes is not None else None, allowed_origins=origins,
    )
    key, secret = tenant_key_create(tenant=tenant)
    tenants_publish()  # also when the test's transaction keeps on_commit from firing
    return Customer(name=name, key_id=key.key_id, secret=secret)


def session_url(base: str, ticket: str | None = None) -> str:
    return f"{base}/ws/session" + (f"?access_token={ticket}" if ticket else "")
