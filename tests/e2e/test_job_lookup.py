"""The job lookup on a real daphne process (no browser needed): a session's jobs by session id
or trace id, even after the session closed, each with its story; staff only."""

from __future__ import annotations

import asyncio
import html
import re

import pytest
from asgiref.sync import sync_to_async

from dispatch import keys, store
from dispatch.history import job_index_keep_s
from tests.clients import FakeBrowser, FakeNode
from tests.staff import fetch, login_cookie

pytestmark = pytest.mark.e2e


def job_rows(body: str) -> list[str]:
    return re.findall(r'<tr class="job" data-job-id="([^"]+)">', body)


async def test_a_sessions_jobs_by_trace_and_session_id_with_their_endings(stack, node_token, settings):
    settings.SCHEDULER_DISPATCH_WAIT_S = 1  # as the server's
    server = stack(SCHEDULER_DISPATCH_WAIT_S=1)
    staff = await sync_to_async(login_cookie)(staff=True)
    node = await FakeNode.connect(server.ws(), node_token)
    await node.register(langs=["zh", "en"], slots=2)
    browser = await FakeBrowser.connect(server.ws())
    await browser.init("zh", "en", trace_id="trace-lookup-1")
    session_id = browser.session_id

    await browser.utterance(0)
    answered = await node.expect("job_assign")
    await node.send(node.result_for(answered))
    assert (await browser.ending())["type"] == "translation_result"
    await browser.utterance(1)
    held = await node.expect("job_assign")
    await browser.send({"type": "session_close", "session_id": session_id})
    await browser.expect("session_close_ack")
    assert (await node.expect("job_cancel"))["job_id"] == held["job_id"]

    unserved = await FakeBrowser.connect(server.ws())
    await unserved.init("th", "vi")
    await unserved.utterance(0)
    refused = await unserved.ending()
    assert refused["code"] == "NO_AVAILABLE_NODE"

    # by trace id, after the session (and its hash) is gone
    assert not await store.async_client().exists(keys.session(session_id))
    page = await sync_to_async(fetch)(f"{server.http()}/dashboard/jobs/?trace_id=trace-lookup-1", staff)
    assert page.status == 200
    assert job_rows(page.body) == [answered["job_id"], held["job_id"]]
    assert f'data-session-id="{session_id}"' in page.body
    text = html.unescape(page.body)
    assert f"translation_result from {node.node_id} (attempt 1)" in text
    assert "cancelled (session_closed); job_cancel sent to the node that held it" in text

    # by session id; and the unplaced job's story says why
    page = await sync_to_async(fetch)(f"{server.http()}/dashboard/jobs/?session_id={unserved.session_id}", staff)
    assert job_rows(page.body) == [refused["job_id"]]
    detail = await sync_to_async(fetch)(f"{server.http()}/dashboard/jobs/{refused['job_id']}/", staff)
    assert detail.status == 200
    text = html.unescape(detail.body)
    assert "error NO_AVAILABLE_NODE" in text and "th → vi" in text and "auto:th-vi" in text
    assert "No attempt: no ready node with a free slot was found within the dispatch wait." in text

    # ?job_id= goes to the job; an unknown one says why there is nothing
    jump = await sync_to_async(fetch)(f"{server.http()}/dashboard/jobs/?job_id={answered['job_id']}", staff)
    assert jump.status == 302 and jump.location == f"/dashboard/jobs/{answered['job_id']}/"
    unknown = await sync_to_async(fetch)(f"{server.http()}/dashboard/jobs/job-0123/", staff)
    assert unknown.status == 404 and "its story expired" in unknown.body
    nothing = await sync_to_async(fetch)(f"{server.http()}/dashboard/jobs/?trace_id=no-such-trace", staff)
    assert "Nothing found" in nothing.body

    # the indexes expire with the stories they point to
    client = store.async_client()
    keep = job_index_keep_s()
    for key in (keys.session_jobs(session_id), keys.trace("trace-lookup-1")):
        assert keep - 5 <= await client.ttl(key) <= keep

    # not for others
    user = await sync_to_async(login_cookie)(staff=False)
    for path in ("/dashboard/jobs/?trace_id=trace-lookup-1", f"/dashboard/jobs/{answered['job_id']}/"):
        refused_page = await sync_to_async(fetch)(server.http() + path, user)
        assert refused_page.status == 302 and refused_page.location.startswith("/admin/login/")
    await asyncio.gather(browser.close(), unserved.close(), node.close())
