"""Tenants on real server processes (docs/protocol.md, tenants): a customer from a new tenant to
a translation, max_sessions across two processes, revocation closing open sessions, and usage
in the database equal to what was sent, across worker restarts."""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.request
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.db.models import Sum

from tenants.models import TenantKey, TenantUsage
from tests.clients import FakeBrowser, FakeNode
from tests.tenancy import Customer, customer_create, session_url
from tests.traffic import keep_alive

pytestmark = pytest.mark.e2e

TICKETS = {
    "SCHEDULER_SESSION_AUTH": "ticket",
    "SCHEDULER_HEARTBEAT_INTERVAL_S": 1,  # session leases 3 s, renewed (and checked) every second
    "SCHEDULER_DISPATCH_WAIT_S": 1,
}


async def browser_with(ticket: str, base: str) -> FakeBrowser:
    return FakeBrowser(await websockets.connect(session_url(base, ticket), max_size=None))


async def node_on(server: Any, token: str, index: int = 0) -> FakeNode:
    node = await FakeNode.connect(server.ws(index), token)
    await node.register(langs=["zh", "en"], slots=8)
    return node


def mint(http: str, credential: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{http}/api/tickets", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {credential}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201
        return json.loads(response.read())


async def test_a_customer_goes_from_a_new_tenant_to_a_translation(stack, node_token):
    server = stack(**TICKETS)
    await sync_to_async(call_command)("tenant", "create", "acme", "--max-sessions", "10")
    credential = await sync_to_async(lambda: _last_line("tenant_key", "create", "acme"))()
    minted = await asyncio.to_thread(mint, server.http(), credential, {"sub": "alice", "ttl_s": 120})
    assert minted["tenant"] == "acme" and minted["expires_at"] > time.time() + 100
    node = await node_on(server, node_token)
    browser = await browser_with(minted["ticket"], server.ws())
    assert (await browser.init("zh", "en"))["type"] == "session_init_ack"
    await browser.say()
    job = await node.expect("job_assign")
    await node.send(node.result_for(job))
    result = await browser.ending()
    assert result["type"] == "translation_result" and result["session_id"] == browser.session_id
    # without a ticket the same server refuses
    bare = await FakeBrowser.connect(server.ws())
    assert (await bare.expect("error"))["code"] == "UNAUTHORIZED" and await bare.closed() == 4401


def _last_line(*args: str) -> str:
    import io

    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue().splitlines()[-1]


async def test_max_sessions_holds_across_two_processes_and_a_dead_processs_sessions_stop_counting(stack):
    server = stack(servers=2, **TICKETS)
    small: Customer = await sync_to_async(customer_create)("small", max_sessions=3)
    browsers = [await browser_with(small.ticket(), server.ws(index % 2)) for index in range(4)]
    answers = await asyncio.gather(*(browser.init("zh", "en") for browser in browsers))
    refused = [b for b, answer in zip(browsers, answers, strict=True) if answer["type"] == "error"]
    assert sorted(answer["type"] for answer in answers) == ["error", "session_init_ack", "session_init_ack", "session_init_ack"]
    assert [a["code"] for a in answers if a["type"] == "error"] == ["QUOTA_EXCEEDED"]
    assert await refused[0].closed() == 4429
    # the sessions of a process that dies stop counting once their lease runs out (3 s)
    on_1 = [b for b in browsers[1::2] if b not in refused]
    await asyncio.to_thread(server.stop_server, 1, signal.SIGKILL)
    started = time.monotonic()
    while True:
        again = await browser_with(small.ticket(), server.ws(0))
        if (await again.init("zh", "en"))["type"] == "session_init_ack":
            break
        assert time.monotonic() - started < 15, "the dead process's sessions kept counting"
        await asyncio.sleep(0.5)
    assert len(on_1) >= 1 and time.monotonic() - started >= 2  # not before their lease ran out


@pytest.mark.parametrize("how", ["revoke the key", "disable the tenant"])
async def test_revoking_closes_open_sessions_within_a_heartbeat_interval_and_cancels_their_jobs(stack, node_token, how):
    server = stack(**TICKETS)
    acme: Customer = await sync_to_async(customer_create)("acme")
    node = await node_on(server, node_token)
    beats = asyncio.ensure_future(keep_alive(node))
    browser = await browser_with(acme.ticket(), server.ws())
    await browser.init("zh", "en")
    await browser.utterance(0)
    job = await node.expect("job_assign")  # the node holds it, unanswered
    if how == "revoke the key":
        await sync_to_async(call_command)("tenant_key", "revoke", acme.key_id)
    else:
        await sync_to_async(call_command)("tenant", "disable", "acme")
    revoked_at = time.monotonic()
    error = await browser.expect("error", timeout=5)
    assert error["code"] == "UNAUTHORIZED"
    assert await browser.closed() == 4401
    assert time.monotonic() - revoked_at < 1 + 1.5  # one heartbeat interval, and a margin
    cancel = await node.expect("job_cancel")
    assert (cancel["job_id"], cancel["reason"]) == (job["job_id"], "session_closed")
    beats.cancel()


async def test_usage_equals_what_was_sent_after_worker_restarts(stack, node_token):
    server = stack(**TICKETS)
    meter: Customer = await sync_to_async(customer_create)("meter")
    node = await node_on(server, node_token)
    beats = asyncio.ensure_future(keep_alive(node))
    browser = await browser_with(meter.ticket(), server.ws())
    await browser.init("zh", "en")

    async def send(indexes: range, outcome: dict[int, str]) -> None:
        for index in indexes:
            await browser.utterance(index)
            job = await node.expect("job_assign")
            kind = outcome.get(index, "result")
            if kind == "result":
                await node.send(node.result_for(job))
            elif kind == "missing":
                await node.send(node.result_for(job, text_asr="", text_translated="", tts_audio=""))
            else:
                await node.send(node.result_for(job, success=False, error={"code": "PROCESSING_ERROR", "message": "x"}))
            await browser.ending(timeout=10)

    def usage() -> dict[str, int]:
        totals = TenantUsage.objects.filter(tenant="meter").aggregate(
            **{name: Sum(name) for name in ("sessions", "jobs", "results", "missing", "errors", "audio_ms", "audio_ms_result")}
        )
        return {name: int(value or 0) for name, value in totals.items()}

    async def usage_becomes(expected: dict[str, int]) -> None:
        deadline = time.monotonic() + 20
        while (seen := await sync_to_async(usage)()) != expected:
            assert time.monotonic() < deadline, seen
            await asyncio.sleep(0.5)

    await send(range(6), {4: "missing", 5: "error"})
    first = {"sessions": 1, "jobs": 6, "results": 4, "missing": 1, "errors": 1, "audio_ms": 6000, "audio_ms_result": 4000}
    await usage_becomes(first)

    # a worker restart, and a second copy beside it, count nothing twice
    server.workers[0].terminate()
    server.workers[0].wait(10)
    server.start_worker()
    server.start_worker()
    await asyncio.sleep(6)  # more than one rollup slot
    assert await sync_to_async(usage)() == first
    await send(range(6, 8), {})
    await usage_becomes(first | {"jobs": 8, "results": 6, "audio_ms": 8000, "audio_ms_result": 6000})
    assert await sync_to_async(lambda: TenantKey.objects.get(key_id=meter.key_id).last_used_at)() is not None

    text = await asyncio.to_thread(lambda: urllib.request.urlopen(f"{server.http()}/metrics", timeout=10).read().decode())
    assert 'scheduler_tenant_sessions{tenant="meter"} 1' in text
    assert 'scheduler_tenant_audio_seconds_total{tenant="meter"} 8' in text
    assert 'scheduler_tenant_jobs_total{tenant="meter",outcome="result"} 6' in text
    assert 'scheduler_tenant_jobs_total{tenant="meter",outcome="error"} 1' in text
    beats.cancel()
