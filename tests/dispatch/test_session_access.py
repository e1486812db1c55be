"""Tenants on ``/ws/session`` (docs/protocol.md, tenants), through the full ASGI application
in-process on the real Redis of the test run: every refusal with its code, a ticket in each of
the three places, the ticket's pairs, the tenant's origins, max_sessions, the daily audio
quota, restricted pools and a tenant's own nodes."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest

from dispatch import keys, store
from nodes.tokens import token_create
from tenants.models import Tenant
from tenants.services import tenant_key_revoke, tenant_update
from tests.clients import AUDIO, split_packets
from tests.dispatch import test_session_socket
from tests.dispatch.test_session_socket import Browser, Node
from tests.tenancy import Customer, customer_create

pytestmark = pytest.mark.django_db(transaction=True)
connect = test_session_socket.connect  # the fixture that opens in-process sockets


@pytest.fixture
def ticket_mode(published, settings):
    settings.SCHEDULER_SESSION_AUTH = "ticket"


@pytest.fixture
def acme(ticket_mode) -> Customer:
    return customer_create("acme")


async def customer(name: str, **quotas: object) -> Customer:
    return await asyncio.to_thread(customer_create, name, **quotas)  # type: ignore[arg-type]


async def refused(connect, path: str = "/ws/session", headers=None) -> tuple[dict, int | None]:
    """Open a session socket that must be refused after the handshake: its error and close code."""
    browser = await connect(Browser, path, headers)
    error = await browser.expect("error")
    return error, await browser.closed()


async def story_of(job_id: str) -> dict:
    return await store.async_client().hgetall(keys.story(job_id))


# --- refusals: error UNAUTHORIZED, then close 4401 --------------------------------------------


async def test_no_ticket_in_ticket_mode(connect, acme):
    error, code = await refused(connect)
    assert (error["code"], code) == ("UNAUTHORIZED", 4401)
    assert "access ticket" in error["message"]


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda c: "not.a.jwt", "well-formed"),
        (lambda c: Customer(c.name, c.key_id, "another-secret-of-the-right-length-000").ticket(), "signature"),
        (lambda c: Customer(c.name, "tk_unknown", c.secret).ticket(), "unknown or revoked"),
        (lambda c: c.ticket(ttl_s=-120), "expired"),
    ],
    ids=["malformed", "bad-signature", "unknown-key", "expired"],
)
async def test_a_bad_ticket_is_refused_with_the_reason(connect, acme, make, why):
    error, code = await refused(connect, f"/ws/session?access_token={make(acme)}")
    assert (error["code"], code) == ("UNAUTHORIZED", 4401)
    assert why in error["message"]


async def test_a_revoked_key_and_a_disabled_tenant_are_refused(connect, acme):
    tenant = await Tenant.objects.aget(name="acme")
    await asyncio.to_thread(tenant_update, tenant=tenant, enabled=False)
    error, code = await refused(connect, f"/ws/session?access_token={acme.ticket()}")
    assert (error["code"], code) == ("UNAUTHORIZED", 4401) and "disabled" in error["message"]
    await asyncio.to_thread(tenant_update, tenant=tenant, enabled=True)
    key = await tenant.keys.aget(key_id=acme.key_id)
    await asyncio.to_thread(tenant_key_revoke, key=key)
    error, code = await refused(connect, f"/ws/session?access_token={acme.ticket()}")
    assert (error["code"], code) == ("UNAUTHORIZED", 4401) and "revoked" in error["message"]


# --- a ticket in each of its three places -----------------------------------------------------


@pytest.mark.parametrize("place", ["query", "header", "cookie"])
async def test_a_ticket_opens_a_session_from_each_place(connect, acme, place):
    ticket = acme.ticket(sub="user-42")
    path, headers = "/ws/session", []
    if place == "query":
        path += f"?access_token={ticket}"
    elif place == "header":
        headers = [(b"authorization", f"Bearer {ticket}".encode())]
    else:
        headers = [(b"cookie", f"theme=dark; scheduler_access_token={ticket}".encode())]
    node = await connect(Node)
    await node.register(langs=["zh", "en"])
    browser = await connect(Browser, path, headers)
    assert (await browser.init("zh", "en", tenant_id="label-1"))["type"] == "session_init_ack"
    await browser.utterance(0)
    job = await node.job()
    await node.answer(job)
    assert (await browser.expect("translation_result"))["utterance_index"] == 0
    story = await story_of(job["job_id"])
    assert (story["tenant"], story["sub"], story["label"]) == ("acme", "user-42", "label-1")


async def test_the_tickets_pairs_limit_the_session(connect, acme):
    browser = await connect(Browser, f"/ws/session?access_token={acme.ticket(pairs=['en-zh'])}")
    error = await browser.init("zh", "en")
    assert error["code"] == "UNSUPPORTED_LANGUAGE_PAIR"
    assert (await browser.init("en", "zh"))["type"] == "session_init_ack"  # the socket stayed open
    error = await browser.init("auto", "en", lang_a="en", lang_b="zh")  # needs zh-en too
    assert error["code"] == "UNSUPPORTED_LANGUAGE_PAIR"


async def test_a_tenants_origins_replace_allowed_origins(connect, settings, ticket_mode):
    settings.ALLOWED_ORIGINS = ["https://everyone.example"]
    shop = await customer("shop", origins="https://app.shop.example")
    for origin, allowed in (("https://app.shop.example", True), ("https://everyone.example", False)):
        browser = Browser(f"/ws/session?access_token={shop.ticket()}", [(b"origin", origin.encode())])
        accepted, _ = await browser.connect()
        assert accepted is allowed, origin
        await browser.disconnect()


# --- open mode: the public tenant -------------------------------------------------------------


async def test_open_mode_sessions_are_the_public_tenants(connect, published):
    node = await connect(Node)
    await node.register(langs=["zh", "en"])
    browser = await connect(Browser)
    await browser.init("zh", "en", tenant_id="their-own-label")
    await browser.utterance(0)
    job = await node.job()
    story = await story_of(job["job_id"])
    assert (story["tenant"], story["label"]) == ("public", "their-own-label")
    # public's quotas apply
    public, _ = await Tenant.objects.aget_or_create(name="public")
    await asyncio.to_thread(tenant_update, tenant=public, max_sessions=1)
    other = await connect(Browser)
    error = await other.init("zh", "en")
    assert error["code"] == "QUOTA_EXCEEDED" and await other.closed() == 4429


# --- quotas ------------------------------------------------------------------------------------


async def test_max_sessions_refuses_the_next_session_with_4429_until_one_ends(connect, ticket_mode):
    small = await customer("small", max_sessions=2)
    path = f"/ws/session?access_token={small.ticket()}"
    first, second, third = [await connect(Browser, path) for _ in range(3)]
    assert (await first.init())["type"] == (await second.init())["type"] == "session_init_ack"
    error = await third.init()
    assert error["code"] == "QUOTA_EXCEEDED" and await third.closed() == 4429
    assert (await second.init("en", "zh"))["type"] == "session_init_ack"  # a new session on its socket
    await first.disconnect()
    fourth = await connect(Browser, path)
    assert (await fourth.init())["type"] == "session_init_ack"


async def test_the_daily_audio_quota_refuses_each_utterance_past_it(connect, ticket_mode):
    # 0.05 minutes = 3 s; each utterance is 1 s of framed Opus (50 packets)
    short = await customer("short", audio_minutes="0.05")
    node = await connect(Node)
    await node.register(langs=["zh", "en"])
    browser = await connect(Browser, f"/ws/session?access_token={short.ticket()}")
    await browser.init()
    for index in range(3):
        await browser.utterance(index)
        await node.answer(await node.job())
        await browser.expect("translation_result")
    await browser.utterance(3)
    error = await browser.error("QUOTA_EXCEEDED")
    assert error["utterance_index"] == 3
    await browser.alive()  # the socket stays open
    # audio_chunk cuts count their packets: 20 of them (0.4 s) are over the quota too
    other = await connect(Browser, f"/ws/session?access_token={short.ticket()}")
    await other.init()
    await other.chunk(b"".join(split_packets(AUDIO)[:20]), final=True)
    assert (await other.error("QUOTA_EXCEEDED"))["utterance_index"] == 0
    day = int(time.time()) // 86_400
    used = await store.async_client().hget(keys.usage(day), "short:audio_ms")
    assert int(used) == 3000
    assert (await node.silent(0.3)) == []


async def test_the_audio_of_an_utterance_frame_is_counted_from_its_framing_or_its_size(connect, ticket_mode):
    tiny = await customer("tiny", audio_minutes="1")
    node = await connect(Node)
    await node.register(langs=["zh", "en"])
    browser = await connect(Browser, f"/ws/session?access_token={tiny.ticket()}")
    await browser.init()
    await browser.utterance(0)  # framed: 50 packets
    await browser.utterance(1, audio_b64=base64.b64encode(bytes(3000)).decode())  # unframed: 3 bytes a ms
    await browser.utterance(2, audio_b64=base64.b64encode(bytes(32000)).decode(), audio_format="pcm16")
    await node.jobs(3)
    used = await store.async_client().hget(keys.usage(int(time.time()) // 86_400), "tiny:audio_ms")
    assert int(used) == 1000 + 1000 + 1000


# --- restricted pools and a tenant's own nodes -------------------------------------------------


async def test_a_restricted_pool_serves_only_its_tenants(connect, settings, ticket_mode):
    from pools.config import import_pools

    settings.SCHEDULER_AUTO_PAIR_POOLS = False
    acme, beta = await customer("acme"), await customer("beta")
    await asyncio.to_thread(import_pools, {"pools": [
        {"name": "acme-only", "priority": 20, "pairs": [["zh", "en"]], "tenants": ["acme"]},
        {"name": "shared", "priority": 10, "pairs": [["en", "zh"]]},
    ]})
    node = await connect(Node)
    await node.register(langs=["zh", "en"])
    beta_browser = await connect(Browser, f"/ws/session?access_token={beta.ticket()}")
    assert (await beta_browser.init("zh", "en"))["code"] == "UNSUPPORTED_LANGUAGE_PAIR"
    assert (await beta_browser.init("en", "zh"))["type"] == "session_init_ack"
    acme_browser = await connect(Browser, f"/ws/session?access_token={acme.ticket()}")
    assert (await acme_browser.init("zh", "en"))["type"] == "session_init_ack"
    await acme_browser.utterance(0)
    job = await node.job()
    assert json.loads((await story_of(job["job_id"]))["attempts"])[0]["pool"] == "acme-only"


async def test_a_tenants_node_serves_only_that_tenant(connect, settings, ticket_mode):
    settings.SCHEDULER_DISPATCH_WAIT_S = 0.5
    acme, beta = await customer("acme"), await customer("beta")
    acme_token = (await asyncio.to_thread(token_create, name="acme-gpu", tenant=await Tenant.objects.aget(name="acme")))[1]
    own = await connect(Node, f"/ws/node?token={acme_token}")
    await own.register(langs=["zh", "en"], slots=2)
    beta_browser = await connect(Browser, f"/ws/session?access_token={beta.ticket()}")
    await beta_browser.init()
    await beta_browser.utterance(0)
    error = await beta_browser.error("NO_AVAILABLE_NODE")  # only acme's node serves zh-en
    assert error["utterance_index"] == 0
    shared = await connect(Node)
    await shared.register(langs=["zh", "en"], slots=8)
    for index in range(1, 6):
        await beta_browser.utterance(index)
    assert len(await shared.jobs(5)) == 5
    acme_browser = await connect(Browser, f"/ws/session?access_token={acme.ticket()}")
    await acme_browser.init()
    for index in range(3):
        await acme_browser.utterance(index)
    assert len(await own.jobs(2)) == 2  # its own node first, while it has a free slot
    assert (await shared.job())["session_id"] == acme_browser.session_id
    assert [f for f in await own.silent(0.3) if f["type"] == "job_assign"] == []
    pools = json.loads(await store.async_client().hget(keys.node(own.node_id), "pools"))
    assert pools and all(name.endswith("@acme") for name in pools)


async def test_the_pair_preview_and_the_dashboard_take_tenants(connect, settings, ticket_mode, admin_client):
    from dispatch import selectors
    from dispatch.fleet import View
    from nodes.dashboard import dashboard_frame
    from pools.config import import_pools

    settings.SCHEDULER_AUTO_PAIR_POOLS = False
    acme = await customer("acme", max_sessions=5)
    await asyncio.to_thread(import_pools, {"pools": [
        {"name": "acme-only", "priority": 20, "pairs": [["zh", "en"]], "tenants": ["acme"]},
        {"name": "shared", "priority": 10, "pairs": [["zh", "en"]]},
    ]})
    shared = await connect(Node)
    await shared.register(langs=["zh", "en"])
    token = (await asyncio.to_thread(token_create, name="acme-gpu", tenant=await Tenant.objects.aget(name="acme")))[1]
    own = await connect(Node, f"/ws/node?token={token}")
    await own.register(langs=["zh", "en"])

    def route(tenant: str) -> list[tuple[str, list[str]]]:
        return [(p.pool, [m.node_id for m in p.members]) for p in selectors.pair_preview("zh>en", tenant)]

    assert await asyncio.to_thread(route, "") == [("shared", [shared.node_id])]
    assert await asyncio.to_thread(route, "acme") == [
        ("acme-only@acme", [own.node_id]), ("acme-only", [shared.node_id]),
        ("shared@acme", [own.node_id]), ("shared", [shared.node_id]),
    ]
    page = (await asyncio.to_thread(
        admin_client.get, "/admin/pools/pool/preview/", {"src_lang": "zh", "tgt_lang": "en", "tenant": "acme"}
    )).content.decode()
    assert 'A job now would go to pool <strong id="first-pool">acme-only@acme</strong>' in page

    for _ in range(2):
        browser = await connect(Browser, f"/ws/session?access_token={acme.ticket()}")
        await browser.init()
    snapshot = await dashboard_frame(View())
    assert snapshot["tenant_sessions"]["acme"] == 2 and snapshot["tenant_sessions"]["public"] == 0


@pytest.fixture
def admin_client(transactional_db):
    from django.contrib.auth.models import User
    from django.test import Client

    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client


async def test_a_rooms_jobs_are_its_speakers_tenants_and_count_against_its_audio_quota(connect, ticket_mode):
    # 0.05 minutes = 3 s; an utterance of 1 s heard in two other languages is 2 s of jobs
    roomy = await customer("roomy", audio_minutes="0.05")
    node = await connect(Node)
    await node.register(langs=["zh", "en", "de"])
    speaker, english, german = [await connect(Browser, f"/ws/session?access_token={roomy.ticket()}") for _ in range(3)]
    await speaker.init("zh", "en")
    await english.init("en", "zh")
    await german.init("de", "zh")
    await speaker.send({"type": "room_create", "client_ts": 1})
    code = (await speaker.expect("room_create_ack"))["room_code"]
    await english.send({"type": "room_join", "room_code": code, "preferred_lang": "en"})
    await german.send({"type": "room_join", "room_code": code, "preferred_lang": "de"})
    await english.expect("room_create_ack")
    await german.expect("room_create_ack")
    await speaker.utterance(0)
    jobs = [await node.job(), await node.job()]
    assert sorted(job["tgt_lang"] for job in jobs) == ["de", "en"]
    assert {(await story_of(job["job_id"]))["tenant"] for job in jobs} == {"roomy"}
    for job in jobs:
        await node.answer(job)
    await english.expect("translation_result")
    await german.expect("translation_result")
    day = int(time.time()) // 86_400
    assert int(await store.async_client().hget(keys.usage(day), "roomy:audio_ms")) == 2000
    await speaker.utterance(1)  # 2 s more would be 4 s: refused, nothing placed
    assert (await speaker.error("QUOTA_EXCEEDED"))["utterance_index"] == 1
    assert (await node.silent(0.3)) == []
