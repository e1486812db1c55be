"""What makes the pool admin guide rather than just accept: checkboxes for required services,
language fields checked as codes with suggestions from live nodes, a confirmation step that
shows what a change will do before it is saved (``dispatch/impact.py``), the automatic pools
and their slots, and each pool's history (the admin's log and ``pools_import`` runs).

``PoolAdminGuide`` and ``LanguageRuleInlineGuide`` are mixed into the pool admin
(``dispatch/admin.py``). The confirmation step: a change form posted with ``_preview`` is held
(re-rendered with its impact and the impact's digest, nothing saved); a save that carries a
digest is applied only when the impact computed now has the same digest, else the preview
comes back. A save without any digest (a script posting the form) is applied as before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from django import forms
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import Field
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from dispatch import admin_reads
from dispatch.impact import config_with_pool, config_without_pool, impact, published_config
from pools.config import pool_spec
from pools.models import SERVICE_TYPES, LanguageRule, Pool, PoolImport
from pools.rules import PoolConfig
from pools.validation import check_language_code

SERVICE_LABELS = {
    "asr": "asr: speech recognition",
    "nmt": "nmt: translation",
    "tts": "tts: speech synthesis",
    "semantic": "semantic: semantic repair",
    "tone": "tone",
    "phonetic": "phonetic",
    "punctuation": "punctuation",
}
LANGUAGES_LIST_ID = "pool-languages"  # the datalist of language suggestions
HISTORY_SHOWN = 100
UNAVAILABLE = "Live state is unavailable (Redis does not answer): the impact cannot be computed."

_FORM_VALID = "_pool_form_valid"  # request attribute: the pool's own fields passed validation
_PREVIEW = "_pool_preview"  # request attribute: the preview a held form shows (None: not held)


class ServicesField(forms.MultipleChoiceField):
    """Required services as checkboxes of the known service types, kept in their usual order."""

    def __init__(self) -> None:
        super().__init__(
            choices=[(name, SERVICE_LABELS.get(name, name)) for name in SERVICE_TYPES],
            widget=forms.CheckboxSelectMultiple,
            required=False,
            label="Required services",
            help_text="A node joins the pool only with every ticked service ready.",
            error_messages={"invalid_choice": "Unknown service type(s): %(value)s. Known: " + ", ".join(SERVICE_TYPES) + "."},
        )

    def clean(self, value: Any) -> list[str]:
        chosen = set(super().clean(value))
        return [name for name in SERVICE_TYPES if name in chosen]


def language_input(label: str, *, many: bool = False) -> forms.CharField:
    """A language field: suggestions from live nodes, and a refusal that names the field."""

    def check(value: str) -> None:
        codes = [code.strip() for code in value.split(",") if code.strip()] if many else [value]
        for code in codes:
            check_language_code(code, label)

    return forms.CharField(
        required=False,
        max_length=400 if many else 16,
        label=label,
        validators=[check],
        help_text="Comma-separated languages, expanded to all ordered pairs (instead of a pair)." if many else "",
        widget=forms.TextInput(
            attrs={"list": LANGUAGES_LIST_ID, "autocomplete": "off", "class": "pool-language", "size": 24 if many else 8}
        ),
    )


@dataclass
class PoolPreview:
    """What a held form shows: the impact's sentences and digest (or why there is none)."""

    digest: str
    lines: list[str] = field(default_factory=list)
    error: str = ""
    again: bool = False  # a save carried a digest that no longer matches


def preview_of(change: Callable[[PoolConfig], PoolConfig]) -> PoolPreview:
    """The impact of publishing ``change(published configuration)`` instead of the published one."""
    try:
        before = published_config()
        found = impact(before, change(before))
    except Exception:  # the admin stays usable while Redis is down
        return PoolPreview(digest=hashlib.sha256(b"unavailable").hexdigest(), error=UNAVAILABLE)
    return PoolPreview(digest=found.digest, lines=found.lines())


class ImpactHeldRules(BaseInlineFormSet):
    """The pool's language rules. Once the pool's fields and its rules are valid, the change's
    impact decides whether the save goes on or the form is shown again with it (``is_valid``
    is False with no error: the page re-renders with everything posted)."""

    request: HttpRequest | None = None

    def is_valid(self) -> bool:
        return bool(super().is_valid()) and not self._held()

    def _held(self) -> bool:
        request = self.request
        if request is None or request.method != "POST" or not getattr(request, _FORM_VALID, False):
            return False
        if hasattr(request, _PREVIEW):
            return getattr(request, _PREVIEW) is not None
        posted = request.POST.get("impact_digest", "")
        if "_preview" not in request.POST and not posted:
            setattr(request, _PREVIEW, None)  # a scripted save: applied as before
            return False
        preview = self._preview()
        held = "_preview" in request.POST or posted != preview.digest
        preview.again = held and "_preview" not in request.POST
        setattr(request, _PREVIEW, preview if held else None)
        return held

    def _preview(self) -> PoolPreview:
        pairs: set[tuple[str, str]] = set()
        for form in self.forms:
            data = form.cleaned_data
            if not data or data.get("DELETE"):
                continue
            rule = LanguageRule(
                src_lang=data.get("src_lang") or "", tgt_lang=data.get("tgt_lang") or "", languages=data.get("languages") or ""
            )
            pairs |= rule.pairs()
        pool: Pool = self.instance
        original = Pool.objects.filter(pk=pool.pk).values_list("name", flat=True).first() if pool.pk else None
        spec = pool_spec(pool, pairs)
        return preview_of(lambda before: config_with_pool(before, spec, replacing=original))


class LanguageRuleForm(forms.ModelForm):
    def _post_clean(self) -> None:
        if self.errors:
            return  # a refused code already says what is wrong; the rule's own checks would blame its absence
        super()._post_clean()  # type: ignore[misc]


class LanguageRuleInlineGuide:
    """For the language-rule inline: labelled language fields with suggestions, and the
    formset that holds a save for its preview."""

    form: ClassVar[Any] = LanguageRuleForm
    formset: ClassVar[Any] = ImpactHeldRules
    LABELS = {"src_lang": "Source language", "tgt_lang": "Target language", "languages": "Languages"}

    def formfield_for_dbfield(self, db_field: Field[Any, Any], request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name in self.LABELS:
            return language_input(self.LABELS[db_field.name], many=db_field.name == "languages")
        return super().formfield_for_dbfield(db_field, request, **kwargs)  # type: ignore[misc]

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        formset = super().get_formset(request, obj, **kwargs)  # type: ignore[misc]
        return type(formset.__name__, (formset,), {"request": request})


class PoolAdminGuide:
    """For the pool admin: checkboxes, the confirmation step, automatic pools, history."""

    change_form_template: ClassVar[Any] = "admin/pools/pool/change_form.html"
    delete_confirmation_template: ClassVar[Any] = "admin/pools/pool/delete_confirmation.html"
    object_history_template: ClassVar[Any] = "admin/pools/pool/object_history.html"

    def formfield_for_dbfield(self, db_field: Field[Any, Any], request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "required_services":
            return ServicesField()
        return super().formfield_for_dbfield(db_field, request, **kwargs)  # type: ignore[misc]

    def save_form(self, request: HttpRequest, form: Any, change: bool) -> Any:
        setattr(request, _FORM_VALID, True)  # called only for a valid form, before the rules validate
        return super().save_form(request, form, change)  # type: ignore[misc]

    def render_change_form(self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        context["pool_preview"] = getattr(request, _PREVIEW, None)
        context["languages_list_id"] = LANGUAGES_LIST_ID
        try:
            context["languages_reported"] = admin_reads.languages_reported()
        except Exception:  # suggestions only: the form works without them
            context["languages_reported"] = []
        return super().render_change_form(request, context, *args, **kwargs)  # type: ignore[misc]

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None) -> Any:
        pool = Pool.objects.filter(pk=object_id).first()
        if request.method == "GET" and pool is not None:
            name = pool.name
            preview = preview_of(lambda before: config_without_pool(before, name))
            extra_context = {**(extra_context or {}), "pool_preview": preview}
        return super().delete_view(request, object_id, extra_context)  # type: ignore[misc]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        try:
            auto: dict[str, Any] = {"on": admin_reads.auto_pools_on(), "count": admin_reads.auto_pools_count()}
        except Exception:
            auto = {"error": "Live state is unavailable (Redis does not answer)."}
        return super().changelist_view(request, {**(extra_context or {}), "auto_pools": auto})  # type: ignore[misc]

    def history_view(self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None) -> Any:
        pool = Pool.objects.filter(pk=object_id).first()
        entries = pool_history(pool.name) if pool is not None else []
        return super().history_view(request, object_id, {**(extra_context or {}), "pool_history": entries})  # type: ignore[misc]

    def auto_pools_view(self, request: HttpRequest) -> HttpResponse:
        """The automatic pools, read-only, a page at a time (name, pair, members, slots)."""
        if not self.has_view_permission(request):  # type: ignore[attr-defined]
            raise PermissionDenied
        starting = request.GET.get("starting", "").strip()[:40]
        try:
            page_number = int(request.GET.get("page", "1"))
        except ValueError:
            page_number = 1
        page, error, on = None, "", False
        try:
            page, on = admin_reads.auto_pools_page(page=page_number, starting=starting), admin_reads.auto_pools_on()
        except Exception:
            error = "Live state is unavailable (Redis does not answer)."
        context = {
            **self.admin_site.each_context(request),  # type: ignore[attr-defined]
            "title": "Automatic pools",
            "opts": Pool._meta,
            "page": page,
            "starting": starting,
            "auto_on": on,
            "error": error,
            "members_read": admin_reads.MEMBERS_READ,
        }
        return TemplateResponse(request, "admin/pools/pool/auto.html", context)


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    who: str
    what: str
    source: str  # "admin" or "pools_import"


def pool_history(name: str) -> list[HistoryEntry]:
    """A pool's changes by name, newest first: the admin's log (every object that had this
    name: an import makes the pools anew) and the pools_import runs that touched it."""
    kind = ContentType.objects.get_for_model(Pool)
    logged = LogEntry.objects.filter(content_type=kind, object_repr=name).select_related("user")
    entries = [
        HistoryEntry(entry.action_time, entry.user.get_username(), entry.get_change_message() or str(entry), "admin")
        for entry in logged.order_by("-action_time")[:HISTORY_SHOWN]
    ]
    for run in PoolImport.objects.filter(touched__contains=PoolImport.touching(name))[:HISTORY_SHOWN]:
        what = "added" if name in run.added else "removed" if name in run.removed else "changed"
        entries.append(
            HistoryEntry(run.at, run.by, f"{what} by pools_import of {run.file_name} (SHA-256 {run.file_sha256})", "pools_import")
        )
    return sorted(entries, key=lambda entry: entry.at, reverse=True)[:HISTORY_SHOWN]
