"""The pool admin: pools with their language rules inline, each pool's live members shown
read-only, and node slot overrides. Every committed change republishes live state."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html_join

from dispatch import selectors
from pools.models import LanguageRule, NodeSlotOverride, Pool
from pools.signals import announce_pools_changed


class AnnouncesChanges(admin.ModelAdmin):
    """Announce ``pools_changed`` after every save or delete (sent once the view commits)."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        announce_pools_changed()

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        announce_pools_changed()

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        super().delete_model(request, obj)
        announce_pools_changed()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        super().delete_queryset(request, queryset)
        announce_pools_changed()


class LanguageRuleInline(admin.TabularInline):
    model = LanguageRule
    extra = 1
    fields = ("src_lang", "tgt_lang", "languages")


@admin.register(Pool)
class PoolAdmin(AnnouncesChanges):
    list_display = ("name", "enabled", "priority", "strategy", "services", "pair_count", "live_members")
    list_filter = ("enabled", "strategy")
    search_fields = ("name",)
    inlines = [LanguageRuleInline]
    readonly_fields = ("live_members",)
    fields = ("name", "enabled", "priority", "strategy", "required_services", "live_members")

    @admin.display(description="required services")
    def services(self, pool: Pool) -> str:
        return ", ".join(pool.required_services) or "—"

    @admin.display(description="pairs")
    def pair_count(self, pool: Pool) -> int:
        return len(pool.pairs())

    @admin.display(description="live members (ready)")
    def live_members(self, pool: Pool) -> str:
        if not pool.pk:
            return "—"
        try:
            members = selectors.pool_members(pool.name)
        except Exception:  # the admin stays usable while Redis is down
            return "(live state unavailable)"
        if not members:
            return "none"
        return format_html_join(", ", "<code>{}</code>", ((m,) for m in members))


@admin.register(NodeSlotOverride)
class NodeSlotOverrideAdmin(AnnouncesChanges):
    list_display = ("node_id", "slots")
    search_fields = ("node_id",)
