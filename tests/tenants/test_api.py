"""``POST /api/tickets`` (docs/protocol.md, tenants): a key mints tickets for its tenant."""

from __future__ import annotations

import json
import time

import pytest
from django.test import Client

from tenants.models import Tenant, TenantKey
from tenants.tickets import ticket_verify
from tests.tenancy import customer_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme(live_prefix):
    return customer_create("acme")


def post(credential: str | None, body: object = None) -> tuple[int, dict]:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {credential}"} if credential is not None else {}
    data = "" if body is None else json.dumps(body)
    response = Client().post("/api/tickets", data=data, content_type="application/json", **headers)
    return response.status_code, response.json()


def test_a_key_mints_a_ticket(acme):
    status, body = post(acme.credential, {"sub": "user-9", "ttl_s": 600, "pairs": ["zh-en", "en-zh"]})
    assert status == 201 and body["tenant"] == "acme"
    claims = ticket_verify(body["ticket"], secret=acme.secret)
    assert (claims.key_id, claims.sub, claims.pairs) == (acme.key_id, "user-9", frozenset({"zh-en", "en-zh"}))
    assert claims.expires_at == body["expires_at"] and abs(body["expires_at"] - time.time() - 600) < 5
    assert TenantKey.objects.get(key_id=acme.key_id).last_used_at is not None


def test_no_body_gives_the_default_five_minutes(acme):
    status, body = post(acme.credential)
    assert status == 201 and abs(body["expires_at"] - time.time() - 300) < 5


@pytest.mark.parametrize("credential", [None, "", "tk_nope:secret", "{key}:wrong-secret", "{key}:", "{key}"])
def test_a_bad_key_gets_401(acme, credential):
    if credential is not None:
        credential = credential.replace("{key}", acme.key_id)
    status, body = post(credential)
    assert status == 401 and body["error"]


def test_a_revoked_key_gets_401_and_a_disabled_tenant_403(acme):
    Tenant.objects.filter(name="acme").update(enabled=False)
    assert post(acme.credential)[0] == 403
    TenantKey.objects.filter(key_id=acme.key_id).update(revoked_at="2026-01-01T00:00:00Z")
    assert post(acme.credential)[0] == 401


@pytest.mark.parametrize(
    "body", [{"ttl_s": 86_401}, {"ttl_s": 0}, {"ttl_s": "60"}, {"sub": 5}, {"pairs": "zh-en"}, [1, 2]]
)
def test_a_bad_body_gets_400(acme, body):
    assert post(acme.credential, body)[0] == 400


def test_only_post(acme):
    assert Client().get("/api/tickets").status_code == 405
