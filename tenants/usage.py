"""Usage per tenant and UTC day in the database: the worker writes the live counters' absolute
values here (an upsert, so a restart or a second worker copy counts nothing twice)."""

from __future__ import annotations

import datetime
from collections.abc import Mapping

from django.db import transaction
from django.db.models import Q

from tenants.models import TenantKey, TenantUsage

USAGE_FIELDS = ("sessions", "jobs", "results", "missing", "errors", "cancelled", "audio_ms", "audio_ms_result")


def usage_store(rows: Mapping[tuple[str, datetime.date], Mapping[str, int]]) -> int:
    """Write each (tenant, day)'s counts as absolute values. A stored number is never lowered
    (after the store lost its data the day's live counters start again from 0). Returns the
    number of rows written."""
    if not rows:
        return 0
    match = Q()
    for tenant, day in rows:
        match |= Q(tenant=tenant, day=day)
    with transaction.atomic():
        stored = {(u.tenant, u.day): u for u in TenantUsage.objects.filter(match)}
        records = []
        for (tenant, day), counts in rows.items():
            before = stored.get((tenant, day))
            values = {
                name: max(int(counts.get(name, 0)), getattr(before, name) if before else 0) for name in USAGE_FIELDS
            }
            records.append(TenantUsage(tenant=tenant, day=day, **values))
        TenantUsage.objects.bulk_create(
            records, update_conflicts=True, unique_fields=["tenant", "day"], update_fields=[*USAGE_FIELDS, "updated_at"]
        )
    return len(records)


def keys_last_used(used_ms: Mapping[str, int]) -> None:
    """Note when each key last opened a session (from live state), never moving it back."""
    for key_id, ms in used_ms.items():
        when = datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC)
        TenantKey.objects.filter(key_id=key_id).filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=when)).update(
            last_used_at=when
        )
