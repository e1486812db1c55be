"""Tenants in the admin: quotas and origins, keys (a new key's secret is shown once; revoking
closes the sessions its tickets opened), and usage per UTC day (a list, a chart per tenant, CSV).
Every committed change announces ``tenants_changed``."""

from __future__ import annotations

import csv
import datetime
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from tenants.models import PUBLIC, Tenant, TenantKey, TenantUsage
from tenants.services import tenant_key_create, tenant_key_revoke
from tenants.signals import announce_tenants_changed
from tenants.usage import USAGE_FIELDS

CHART_DAYS = 30


def _shown_once(request: HttpRequest, key: TenantKey, secret: str) -> None:
    messages.warning(
        request,
        f"Key for {key.tenant.name}: {key.key_id}:{secret} — copy it now, it is not shown again. Your backend "
        f"mints tickets with POST /api/tickets and the header Authorization: Bearer {key.key_id}:<secret>.",
    )


class TenantKeyInline(admin.TabularInline):
    model = TenantKey
    extra = 0
    fields = ("key_id", "label", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("key_id", "created_at", "last_used_at", "revoked_at")
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # keys are made by the "Create a key" action, which shows the secret once


def usage_chart(rows: list[TenantUsage], days: int = CHART_DAYS, today: datetime.date | None = None) -> SafeString:
    """An inline SVG bar chart of audio minutes per day (jobs in each bar's title)."""
    today = today or timezone.now().date()
    by_day = {row.day: row for row in rows}
    dates = [today - datetime.timedelta(days=days - 1 - n) for n in range(days)]
    minutes = [(by_day[d].audio_ms / 60000 if d in by_day else 0.0) for d in dates]
    top = max(minutes) or 1.0
    width, height, bar = days * 12, 80, 10
    bars = format_html_join(
        "",
        '<rect x="{}" y="{}" width="{}" height="{}" fill="#447e9b"><title>{}: {} min, {} jobs</title></rect>',
        (
            (
                n * 12, f"{height - value / top * height:.1f}", bar, f"{value / top * height:.1f}",
                d.isoformat(), f"{value:.1f}", by_day[d].jobs if d in by_day else 0,
            )
            for n, (d, value) in enumerate(zip(dates, minutes, strict=True))
        ),
    )
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" role="img" '
        'aria-label="audio minutes per day">{}<text x="0" y="{}" font-size="10">{} … {} (max {} min/day)</text></svg>',
        width, height + 14, bars, height + 12, dates[0].isoformat(), dates[-1].isoformat(), f"{top:.1f}",
    )


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ("name", "enabled", "max_sessions", "audio_minutes_per_day", "live_keys", "origins_text")
    list_filter = ("enabled",)
    search_fields = ("name", "notes")
    inlines = [TenantKeyInline]
    actions = ["create_key", "disable", "enable"]
    fields = (
        "name", "enabled", "max_sessions", "audio_minutes_per_day", "allowed_origins", "notes", "usage_last_days",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tenant]:
        return super().get_queryset(request).annotate(
            live_key_count=Count("keys", filter=Q(keys__revoked_at__isnull=True))
        )

    def get_readonly_fields(self, request: HttpRequest, obj: Tenant | None = None) -> tuple[str, ...]:
        return ("name", "usage_last_days") if obj is not None else ("usage_last_days",)

    def has_delete_permission(self, request: HttpRequest, obj: Tenant | None = None) -> bool:
        return (obj is None or obj.name != PUBLIC) and super().has_delete_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Tenant, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        announce_tenants_changed()

    def delete_model(self, request: HttpRequest, obj: Tenant) -> None:
        super().delete_model(request, obj)
        announce_tenants_changed()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        super().delete_queryset(request, queryset.exclude(name=PUBLIC))
        announce_tenants_changed()

    @admin.display(description="live keys", ordering="live_key_count")
    def live_keys(self, tenant: Any) -> int:
        return int(getattr(tenant, "live_key_count", 0))

    @admin.display(description="allowed origins")
    def origins_text(self, tenant: Tenant) -> str:
        return ", ".join(tenant.origins()) or "(ALLOWED_ORIGINS)"

    @admin.display(description=f"audio minutes per day, last {CHART_DAYS} days")
    def usage_last_days(self, tenant: Tenant) -> SafeString | str:
        if not tenant.pk:
            return "—"
        since = timezone.now().date() - datetime.timedelta(days=CHART_DAYS)
        return usage_chart(list(TenantUsage.objects.filter(tenant=tenant.name, day__gt=since)))

    @admin.action(description="Create a key for each selected tenant (its secret is shown once)")
    def create_key(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        for tenant in queryset:
            key, secret = tenant_key_create(tenant=tenant)
            _shown_once(request, key, secret)

    @admin.action(description="Disable selected tenants (closes their open sessions)")
    def disable(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        changed = queryset.update(enabled=False)
        announce_tenants_changed()
        self.message_user(request, f"Disabled {changed} tenant(s); their open sessions close within a heartbeat interval.")

    @admin.action(description="Enable selected tenants")
    def enable(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        changed = queryset.update(enabled=True)
        announce_tenants_changed()
        self.message_user(request, f"Enabled {changed} tenant(s).")


@admin.register(TenantKey)
class TenantKeyAdmin(admin.ModelAdmin):
    list_display = ("key_id", "tenant", "label", "created_at", "last_used_at", "revoked_at")
    list_filter = ("tenant",)
    search_fields = ("key_id", "label", "tenant__name")
    readonly_fields = ("key_id", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke"]

    def get_fields(self, request: HttpRequest, obj: TenantKey | None = None) -> list[str]:  # type: ignore[override]
        if obj is None:
            return ["tenant", "label"]
        return ["tenant", "key_id", "label", "created_at", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: TenantKey | None = None) -> tuple[str, ...]:
        base = ("key_id", "created_at", "last_used_at", "revoked_at")
        return ("tenant", *base) if obj is not None else base

    def save_model(self, request: HttpRequest, obj: TenantKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        key, secret = tenant_key_create(tenant=obj.tenant, label=obj.label)
        obj.pk, obj.key_id = key.pk, key.key_id  # the admin redirects to the key it made
        _shown_once(request, key, secret)

    def has_delete_permission(self, request: HttpRequest, obj: TenantKey | None = None) -> bool:
        return False  # revoke instead: the record says when a key was last used and revoked

    @admin.action(description="Revoke selected keys (closes the sessions their tickets opened)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[TenantKey]) -> None:
        for key in queryset:
            tenant_key_revoke(key=key)
        self.message_user(request, f"Revoked {queryset.count()} key(s); their sessions close within a heartbeat interval.")


def usage_csv(queryset: QuerySet[TenantUsage]) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="tenant-usage.csv"'
    writer = csv.writer(response)
    names = [name for name in USAGE_FIELDS if not name.startswith("audio_ms")]
    writer.writerow(["tenant", "day", *names, "audio_s", "audio_s_result"])
    for row in queryset.order_by("tenant", "day"):
        writer.writerow(
            [row.tenant, row.day.isoformat(), *(getattr(row, name) for name in names),
             f"{row.audio_ms / 1000:.3f}", f"{row.audio_ms_result / 1000:.3f}"]
        )
    return response


@admin.register(TenantUsage)
class TenantUsageAdmin(admin.ModelAdmin):
    list_display = ("tenant", "day", "sessions", "jobs", "results", "missing", "errors", "cancelled", "audio_s", "audio_s_result")
    list_filter = ("tenant",)
    date_hierarchy = "day"
    search_fields = ("tenant",)
    actions = ["export_csv"]
    change_list_template = "admin/tenants/tenantusage/change_list.html"

    def get_urls(self) -> list[URLPattern]:
        export = path("export.csv", self.admin_site.admin_view(self.export_all), name="tenants_tenantusage_export")
        return [export, *super().get_urls()]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # written by the worker from the live counters

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="audio s", ordering="audio_ms")
    def audio_s(self, row: TenantUsage) -> str:
        return f"{row.audio_ms / 1000:.1f}"

    @admin.display(description="audio s with a result", ordering="audio_ms_result")
    def audio_s_result(self, row: TenantUsage) -> str:
        return f"{row.audio_ms_result / 1000:.1f}"

    @admin.action(description="Export selected rows as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[TenantUsage]) -> HttpResponse:
        return usage_csv(queryset)

    def export_all(self, request: HttpRequest) -> HttpResponse:
        """Every row the list shows with its current filters (``?tenant=``, dates), as CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        changelist = self.get_changelist_instance(request)
        return usage_csv(changelist.get_queryset(request))
