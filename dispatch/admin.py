"""The pool admin: pools with their language rules inline, each pool's live members shown
read-only (a count and 20 of them: a pool may have 10,000), a "who would serve this pair now"
preview (a sample of each big pool), and node slot overrides. Every committed change
republishes live state. What guides an admin (checkboxes, language suggestions, the impact of a
change before it is saved, automatic pools, history) is in ``admin_guide.py``."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.html import format_html, format_html_join

from dispatch import selectors
from dispatch.admin_guide import LanguageRuleInlineGuide, PoolAdminGuide
from pools.models import LanguageRule, NodeSlotOverride, Pool
from pools.rules import one_way_need, two_way_need
from pools.signals import announce_pools_changed
from tenants.models import Tenant


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


class LanguageRuleInline(LanguageRuleInlineGuide, admin.TabularInline):
    model = LanguageRule
    extra = 1
    fields = ("src_lang", "tgt_lang", "languages")


class PairPreviewForm(forms.Form):
    src_lang = forms.RegexField(regex=r"^[A-Za-z][A-Za-z0-9_-]{0,15}$", label="From", max_length=16)
    tgt_lang = forms.RegexField(regex=r"^[A-Za-z][A-Za-z0-9_-]{0,15}$", label="To", max_length=16)
    two_way = forms.BooleanField(required=False, label="Two-way (both directions)")
    tenant = forms.ModelChoiceField(
        queryset=Tenant.objects.all(), required=False, to_field_name="name", empty_label="(any: shared pools only)",
        label="For tenant",
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("src_lang") and data.get("src_lang") == data.get("tgt_lang"):
            raise forms.ValidationError("The two languages must differ.")
        return data

    def need(self) -> str:
        src, tgt = self.cleaned_data["src_lang"], self.cleaned_data["tgt_lang"]
        return two_way_need(src, tgt) if self.cleaned_data["two_way"] else one_way_need(src, tgt)


LIVE_MEMBERS_SHOWN = 20


class PoolForm(forms.ModelForm):
    tenants = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Only these tenants' sessions may use the pool; none ticked = everyone.",
    )

    class Meta:
        model = Pool
        fields = "__all__"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        names = list(Tenant.objects.values_list("name", flat=True))
        names += [name for name in self.instance.tenants or [] if name not in names]  # a deleted tenant stays visible
        self.fields["tenants"].choices = [(name, name) for name in names]  # type: ignore[attr-defined]


@admin.register(Pool)
class PoolAdmin(PoolAdminGuide, AnnouncesChanges):
    form = PoolForm
    list_display = ("name", "enabled", "priority", "strategy", "services", "pair_count", "tenants_text", "live_members")
    list_filter = ("enabled", "strategy")
    search_fields = ("name",)
    inlines = [LanguageRuleInline]
    readonly_fields = ("live_members",)
    fields = ("name", "enabled", "priority", "strategy", "required_services", "tenants", "live_members")
    change_list_template = "admin/pools/pool/change_list.html"

    def get_urls(self) -> list[URLPattern]:
        preview = path("preview/", self.admin_site.admin_view(self.pair_preview), name="pools_pool_preview")
        auto = path("auto/", self.admin_site.admin_view(self.auto_pools_view), name="pools_pool_auto")
        return [preview, auto, *super().get_urls()]

    def pair_preview(self, request: HttpRequest) -> HttpResponse:
        """Who would serve this pair now: the route's pools in order, each with its members
        and their free slots (eligible ones first)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = PairPreviewForm(request.GET or None)
        previews, error = None, None
        if form.is_valid():
            try:
                tenant = form.cleaned_data["tenant"]
                previews = selectors.pair_preview(form.need(), tenant.name if tenant else "")
            except Exception:  # the admin stays usable while Redis is down
                error = "Live state is unavailable (Redis does not answer)."
        first = next((p.pool for p in previews or [] if p.eligible), None)
        context = {
            **self.admin_site.each_context(request),
            "title": "Who would serve this pair now",
            "opts": self.model._meta,
            "form": form,
            "previews": previews,
            "first_pool": first,
            "error": error,
        }
        return TemplateResponse(request, "admin/pools/pool/preview.html", context)

    @admin.display(description="required services")
    def services(self, pool: Pool) -> str:
        return ", ".join(pool.required_services) or "—"

    @admin.display(description="tenants")
    def tenants_text(self, pool: Pool) -> str:
        return ", ".join(pool.tenants) or "everyone"

    @admin.display(description="pairs")
    def pair_count(self, pool: Pool) -> int:
        return len(pool.pairs())

    @admin.display(description="live members (ready)")
    def live_members(self, pool: Pool) -> str:
        if not pool.pk:
            return "—"
        try:
            count, members = selectors.pool_members_shown(pool.name, LIVE_MEMBERS_SHOWN)
        except Exception:  # the admin stays usable while Redis is down
            return "(live state unavailable)"
        if not members:
            return "none"
        shown = format_html_join(", ", "<code>{}</code>", ((m,) for m in members))
        if count <= len(members):
            return shown
        return format_html("{} members: {} and {} more", count, shown, count - len(members))


@admin.register(NodeSlotOverride)
class NodeSlotOverrideAdmin(AnnouncesChanges):
    list_display = ("node_id", "slots")
    search_fields = ("node_id",)
