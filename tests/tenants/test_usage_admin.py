"""Usage per tenant and day in the database (absolute values: rolling up twice counts nothing
twice, and a lower live number never lowers a stored one), and the tenants' admin: keys shown
once, the usage list, its CSV and each tenant's chart."""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from dispatch.usage import usage_rows
from tenants.admin import usage_chart
from tenants.models import Tenant, TenantKey, TenantUsage
from tenants.usage import usage_store

pytestmark = pytest.mark.django_db
DAY = datetime.date(2026, 11, 30)


@pytest.fixture(autouse=True)
def quick_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client


def test_live_counters_become_rows_per_tenant_and_day():
    day = (DAY - datetime.date(1970, 1, 1)).days
    rows = usage_rows(day, {"acme:jobs": "3", "acme:audio_ms": "3000", "a.b-c:sessions": "1", "acme:unknown": "9"})
    assert rows == {("acme", DAY): {"jobs": 3, "audio_ms": 3000}, ("a.b-c", DAY): {"sessions": 1}}


def test_rolling_up_is_idempotent_and_never_lowers_a_count():
    usage_store({("acme", DAY): {"jobs": 3, "audio_ms": 3000}})
    usage_store({("acme", DAY): {"jobs": 3, "audio_ms": 3000}})
    row = TenantUsage.objects.get(tenant="acme", day=DAY)
    assert (row.jobs, row.audio_ms) == (3, 3000)
    usage_store({("acme", DAY): {"jobs": 5, "audio_ms": 1000}, ("beta", DAY): {"sessions": 2}})
    row.refresh_from_db()
    assert (row.jobs, row.audio_ms) == (5, 3000)
    assert TenantUsage.objects.count() == 2


def test_the_chart_has_a_bar_per_day():
    usage_store({("acme", DAY): {"jobs": 4, "audio_ms": 120_000}})
    svg = str(usage_chart(list(TenantUsage.objects.all()), days=7, today=DAY))
    assert svg.startswith("<svg") and svg.count("<rect") == 7
    assert "2026-11-30: 2.0 min, 4 jobs" in svg


def test_a_key_made_in_the_admin_is_shown_once(admin_client, live_prefix):
    tenant = Tenant.objects.create(name="acme")
    response = admin_client.post("/admin/tenants/tenantkey/add/", {"tenant": tenant.pk, "label": "web"}, follow=True)
    assert response.status_code == 200
    shown = re.search(r"(tk_[0-9a-f]{16}):([\w-]{20,})", response.content.decode())
    assert shown is not None
    key = TenantKey.objects.get(key_id=shown.group(1))
    assert key.label == "web" and shown.group(2) not in key.sealed_secret
    page = admin_client.get(f"/admin/tenants/tenantkey/{key.pk}/change/").content.decode()
    assert shown.group(2) not in page
    admin_client.post("/admin/tenants/tenantkey/", {"action": "revoke", "_selected_action": [key.pk]})
    assert TenantKey.objects.get(pk=key.pk).revoked


def test_the_tenant_admin_makes_keys_and_shows_usage(admin_client, live_prefix):
    tenant = Tenant.objects.create(name="acme", max_sessions=3)
    response = admin_client.post(
        "/admin/tenants/tenant/", {"action": "create_key", "_selected_action": [tenant.pk]}, follow=True
    )
    assert re.search(r"tk_[0-9a-f]{16}:[\w-]{20,}", response.content.decode())
    usage_store({("acme", timezone.now().date()): {"jobs": 2, "audio_ms": 60_000}})
    page = admin_client.get(f"/admin/tenants/tenant/{tenant.pk}/change/").content.decode()
    assert "<svg" in page and "1.0 min, 2 jobs" in page
    listing = admin_client.get("/admin/tenants/tenant/").content.decode()
    assert "acme" in listing


def test_usage_list_and_csv(admin_client):
    usage_store({("acme", DAY): {"jobs": 2, "results": 2, "audio_ms": 2500}, ("beta", DAY): {"jobs": 1}})
    listing = admin_client.get("/admin/tenants/tenantusage/?tenant=acme").content.decode()
    assert "acme" in listing and "Download CSV" in listing
    csv_text = admin_client.get("/admin/tenants/tenantusage/export.csv?tenant=acme").content.decode()
    lines = csv_text.strip().splitlines()
    assert lines[0].startswith("tenant,day,sessions,jobs,results")
    assert lines[1:] == ["acme,2026-11-30,0,2,2,0,0,0,2.500,0.000"]
    everything = admin_client.get("/admin/tenants/tenantusage/export.csv").content.decode()
    assert len(everything.strip().splitlines()) == 3
