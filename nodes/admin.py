"""Node tokens in the admin: creating one shows its plaintext once; revoking closes its nodes."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from dispatch.fleet_walk import token_nodes
from nodes.models import NodeToken
from nodes.tokens import new_plaintext, token_hash, token_revoke


@admin.register(NodeToken)
class NodeTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "tenant", "created_at", "last_used_at", "revoked_at")
    list_filter = ("tenant",)
    fields = ("name", "tenant", "created_at", "last_used_at", "revoked_at", "connected_nodes")
    actions = ["revoke"]

    def get_readonly_fields(self, request: HttpRequest, obj: NodeToken | None = None) -> tuple[str, ...]:
        # a node takes its token's tenant when it registers: set it when the token is made
        base = ("created_at", "last_used_at", "revoked_at", "connected_nodes")
        return ("tenant", *base) if obj is not None else base

    def save_model(self, request: HttpRequest, obj: NodeToken, form: Any, change: bool) -> None:
        if not change:
            plaintext = new_plaintext()
            obj.token_hash = token_hash(plaintext)
            super().save_model(request, obj, form, change)
            messages.warning(
                request,
                f"Token for {obj.name}: {plaintext} — copy it now, it is not shown again. "
                f"Nodes connect with ws://HOST:PORT/ws/node?token={plaintext}",
            )
            return
        super().save_model(request, obj, form, change)

    @admin.display(description="nodes connected with it now")
    def connected_nodes(self, token: NodeToken) -> str:
        """A count and the first few ids (a bounded walk of the known nodes: dispatch/fleet_walk.py)."""
        if not token.pk:
            return "—"
        try:
            found = token_nodes(str(token.pk))
        except Exception:  # the admin stays usable while Redis is down
            return "(live state unavailable)"
        if not found.count:
            return "none"
        shown = format_html_join(", ", "<code>{}</code>", ((node_id,) for node_id in found.first))
        more = ", …" if found.count > len(found.first) else ""
        least = "at least " if found.at_least else ""
        return format_html('<span id="token-nodes">{}{}: {}{}</span>', least, found.count, shown, more)

    @admin.action(description="Revoke selected tokens (closes their live nodes)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[NodeToken]) -> None:
        closed = sum(token_revoke(token=token) for token in queryset)
        self.message_user(request, f"Revoked {queryset.count()} token(s); {closed} live node(s) closed.")
