"""The commands of docs/protocol.md, tenants: ``tenant``, ``tenant_key``, ``session_ticket``, and
``node_token create --tenant``."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.apps import apps
from django.core.management import call_command
from django.core.management.base import CommandError

from nodes.models import NodeToken
from tenants import sealing
from tenants.models import Tenant, TenantKey
from tenants.tickets import ticket_verify

pytestmark = pytest.mark.django_db


def run(name: str, *args: str) -> list[str]:
    out = io.StringIO()
    call_command(name, *args, stdout=out)
    return out.getvalue().splitlines()


def test_tenant_create_update_disable_enable():
    run("tenant", "create", "acme", "--max-sessions", "5", "--audio-minutes-per-day", "120.5")
    acme = Tenant.objects.get(name="acme")
    assert (acme.enabled, acme.max_sessions, acme.audio_minutes_per_day) == (True, 5, Decimal("120.5"))
    run("tenant", "update", "acme", "--max-sessions", "", "--origins", "https://app.acme.example")
    acme.refresh_from_db()
    assert acme.max_sessions is None and acme.audio_minutes_per_day == Decimal("120.5")  # "" clears, absent keeps
    assert acme.origins() == ["https://app.acme.example"]
    run("tenant", "disable", "acme")
    assert not Tenant.objects.get(name="acme").enabled
    run("tenant", "enable", "acme")
    assert Tenant.objects.get(name="acme").enabled
    assert any(line.startswith("acme\tenabled") for line in run("tenant", "list"))


def test_tenant_command_errors_name_the_problem():
    run("tenant", "create", "acme")
    with pytest.raises(CommandError, match="already exists"):
        run("tenant", "create", "acme")
    with pytest.raises(CommandError, match="no tenant"):
        run("tenant", "update", "nobody", "--max-sessions", "1")
    with pytest.raises(CommandError, match="not a number"):
        run("tenant", "update", "acme", "--max-sessions", "many")
    with pytest.raises(CommandError, match="name"):
        run("tenant", "create", "no spaces")


def test_a_key_is_printed_once_and_stored_only_sealed():
    run("tenant", "create", "acme")
    out = run("tenant_key", "create", "acme")
    key_id, _, secret = out[-1].partition(":")
    key = TenantKey.objects.get(key_id=key_id)
    assert key.tenant.name == "acme" and secret
    assert secret not in key.sealed_secret and sealing.unseal(key.sealed_secret) == secret
    listed = run("tenant_key", "list")
    assert any(key_id in line and "acme" in line for line in listed)
    assert not any(secret in line for line in listed)
    run("tenant_key", "revoke", key_id)
    assert TenantKey.objects.get(key_id=key_id).revoked


def test_session_ticket_signs_with_the_newest_live_key():
    run("tenant", "create", "acme")
    with pytest.raises(CommandError, match="no live key"):
        run("session_ticket", "acme")
    old = run("tenant_key", "create", "acme")[-1]
    new = run("tenant_key", "create", "acme")[-1]
    ticket = run("session_ticket", "acme", "--ttl", "60", "--sub", "user-1", "--pair", "zh-en")[-1]
    key_id, _, secret = new.partition(":")
    claims = ticket_verify(ticket, secret=secret)
    assert (claims.key_id, claims.sub, claims.pairs) == (key_id, "user-1", frozenset({"zh-en"}))
    run("tenant_key", "revoke", key_id)
    ticket = run("session_ticket", "acme")[-1]
    assert ticket_verify(ticket, secret=old.partition(":")[2]).key_id == old.partition(":")[0]


def test_node_token_for_a_tenant():
    run("tenant", "create", "acme")
    run("node_token", "create", "acme-gpu", "--tenant", "acme")
    assert NodeToken.objects.get(name="acme-gpu").tenant.name == "acme"
    assert any("acme-gpu" in line and "tenant acme" in line for line in run("node_token", "list"))
    with pytest.raises(CommandError, match="no tenant"):
        run("node_token", "create", "other-gpu", "--tenant", "nobody")


def test_the_public_tenant_is_made_by_a_migration():
    from importlib import import_module

    Tenant.objects.filter(name="public").delete()
    import_module("tenants.migrations.0002_public_tenant").create_public(apps, None)
    import_module("tenants.migrations.0002_public_tenant").create_public(apps, None)  # once only
    assert Tenant.objects.filter(name="public").count() == 1
