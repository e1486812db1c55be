"""Tenants and their keys: create, change, disable, issue and revoke keys, mint tickets.

Every committed change announces ``tenants_changed`` (``dispatch`` republishes live state, and
revoked keys and disabled tenants lose their open sessions within a heartbeat interval).
"""

from __future__ import annotations

import hmac
import secrets
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from tenants import sealing, tickets
from tenants.models import Tenant, TenantKey
from tenants.signals import announce_tenants_changed


def new_key_id() -> str:
    return "tk_" + secrets.token_hex(8)


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def tenant_create(
    *, name: str, max_sessions: int | None = None, audio_minutes_per_day: Decimal | None = None,
    allowed_origins: str = "", notes: str = "",
) -> Tenant:
    tenant = Tenant(
        name=name, max_sessions=max_sessions, audio_minutes_per_day=audio_minutes_per_day,
        allowed_origins=allowed_origins, notes=notes,
    )
    tenant.full_clean()
    with transaction.atomic():
        tenant.save()
        announce_tenants_changed()
    return tenant


def tenant_update(*, tenant: Tenant, **fields: object) -> Tenant:
    """Change the given fields (``max_sessions``, ``audio_minutes_per_day``, ``enabled``, ...)."""
    for name, value in fields.items():
        setattr(tenant, name, value)
    tenant.full_clean()
    with transaction.atomic():
        tenant.save()
        announce_tenants_changed()
    return tenant


def tenant_key_create(*, tenant: Tenant, label: str = "") -> tuple[TenantKey, str]:
    """A new key; returns it and its secret, which is shown once and stored only sealed."""
    secret = new_secret()
    with transaction.atomic():
        key = TenantKey.objects.create(
            tenant=tenant, key_id=new_key_id(), sealed_secret=sealing.seal(secret), label=label
        )
        announce_tenants_changed()
    return key, secret


def tenant_key_revoke(*, key: TenantKey) -> None:
    if key.revoked_at is None:
        with transaction.atomic():
            key.revoked_at = timezone.now()
            key.save(update_fields=["revoked_at"])
            announce_tenants_changed()


class BadKey(Exception):
    """Unknown or revoked key, or a wrong secret (HTTP 401)."""


class TenantDisabled(Exception):
    """The key's tenant is disabled (HTTP 403)."""


def key_authenticate(credential: str) -> TenantKey:
    """The live key for ``<key_id>:<secret>``; BadKey or TenantDisabled otherwise."""
    key_id, _, secret = credential.partition(":")
    key = TenantKey.objects.select_related("tenant").filter(key_id=key_id, revoked_at__isnull=True).first()
    if key is None or not secret:
        raise BadKey(key_id)
    try:
        stored = sealing.unseal(key.sealed_secret)
    except sealing.UnreadableSecret:
        raise BadKey(key_id) from None
    if not hmac.compare_digest(stored.encode(), secret.encode()):
        raise BadKey(key_id)
    if not key.tenant.enabled:
        raise TenantDisabled(key.tenant.name)
    TenantKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
    return key


def key_ticket(
    *, key: TenantKey, ttl_s: int = tickets.DEFAULT_TTL_S, sub: str | None = None, pairs: list[str] | None = None,
) -> tuple[str, int]:
    """A ticket signed with this key; and when it expires (epoch s)."""
    return tickets.ticket_mint(
        key_id=key.key_id, secret=sealing.unseal(key.sealed_secret), ttl_s=ttl_s, sub=sub, pairs=pairs
    )


def tenant_signing_key(tenant: Tenant) -> TenantKey | None:
    """The tenant's newest live key (what ``session_ticket`` signs with)."""
    return tenant.keys.filter(revoked_at__isnull=True).order_by("-created_at", "-pk").first()
