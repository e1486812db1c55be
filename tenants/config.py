"""The tenants as data: what live state holds of them (published by ``dispatch``).

Each tenant becomes one record (enabled, quotas in the units the scripts count, origins); each
live key one record (its tenant and its secret, still sealed: a process opens it with its own
``SECRET_KEY`` when it verifies a ticket).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from tenants.models import Tenant, TenantKey


@dataclass(frozen=True)
class TenantsConfig:
    tenants: dict[str, dict[str, Any]]  # name → record
    keys: dict[str, dict[str, str]]  # key id → {"tenant": name, "secret": sealed secret}

    @property
    def version(self) -> str:
        text = json.dumps([self.tenants, self.keys], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def tenant_record(tenant: Tenant) -> dict[str, Any]:
    """What the scripts and the session socket read of a tenant; unset quotas are left out."""
    record: dict[str, Any] = {"enabled": tenant.enabled, "origins": tenant.origins()}
    if tenant.max_sessions is not None:
        record["max_sessions"] = tenant.max_sessions
    if tenant.audio_minutes_per_day is not None:
        record["audio_ms_per_day"] = int(tenant.audio_minutes_per_day * 60_000)
    return record


def load_tenants() -> TenantsConfig:
    return TenantsConfig(
        tenants={tenant.name: tenant_record(tenant) for tenant in Tenant.objects.all()},
        keys={
            key.key_id: {"tenant": key.tenant.name, "secret": key.sealed_secret}
            for key in TenantKey.objects.select_related("tenant").filter(revoked_at__isnull=True)
        },
    )
