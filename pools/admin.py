"""The pools_import runs, read-only: who replaced the configuration, when, with which file (and
its SHA-256), and which pools that added, removed or changed. (The pool admin itself lives in
``dispatch/admin.py``: it shows live state.)"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from pools.models import PoolImport


@admin.register(PoolImport)
class PoolImportAdmin(admin.ModelAdmin):
    list_display = ("at", "by", "file_name", "short_hash", "pools", "added", "removed", "changed")
    search_fields = ("file_name", "file_sha256", "touched", "by")
    readonly_fields = ("at", "by", "file_name", "file_sha256", "pools", "added", "removed", "changed")
    fields = readonly_fields

    @admin.display(description="SHA-256")
    def short_hash(self, run: PoolImport) -> str:
        return run.file_sha256[:12]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
