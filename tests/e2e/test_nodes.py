"""Node sockets against real daphne processes: tokens, ids, pool memberships, idle sockets."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async

from dispatch.selectors import node_record, pool_members
from nodes.models import NodeToken
from nodes.tokens import token_create, token_hash, token_revoke
from pools.config import import_pools
from tests.clients import FakeBrowser, FakeNode, register_frame

pytestmark = pytest.mark.e2e

CLOSE_MARGIN_S = 3.0


@pytest.fixture
def other_token(transactional_db: None) -> str:
    return token_create(name=f"other-{uuid.uuid4().hex[:6]}")[1]


def revoke(plaintext: str) -> int:
    return token_revoke(token=NodeToken.objects.get(token_hash=token_hash(plaintext)))


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll ``check`` until it returns something true (live state written by another process)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def register_refused(node: FakeNode, frame: dict[str, Any]) -> int | None:
    """Send a node_register the server may already have closed the socket for; the close code."""
    try:
        await node.send(frame)
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None
    return await node.closed()


def status(node_id: str) -> str | None:
    return node_record(node_id).get("status")


# --- Tokens -----------------------------------------------------------------------------------


async def test_missing_and_wrong_tokens_are_closed_4401(stack, node_token):
    server = stack(worker=False)
    missing = await FakeNode.connect(server.ws(), None)
    assert await missing.closed() == 4401
    wrong = await FakeNode.connect(server.ws(), "nt_wrong-token")
    assert await register_refused(wrong, register_frame()) == 4401
    bad_header = await FakeNode.connect(server.ws(), None, Authorization="Bearer nt_wrong-token")
    assert await bad_header.closed() == 4401
    header = await FakeNode.connect(server.ws(), None, Authorization=f"Bearer {node_token}")
    assert (await header.register())["status"] == "ready"
    await header.close()


async def test_revoking_a_token_closes_its_idle_node_within_the_heartbeat_interval(
    stack, node_token, other_token
):
    interval = 2.0
    server = stack(worker=True, SCHEDULER_HEARTBEAT_INTERVAL_S=interval)
    idle = await FakeNode.connect(server.ws(), node_token)
    await idle.register()
    bystander = await FakeNode.connect(server.ws(), other_token)
    await bystander.register()

    started = time.monotonic()
    assert await sync_to_async(revoke)(node_token) == 1
    assert await idle.closed(timeout=interval + CLOSE_MARGIN_S) == 4401  # it sent nothing meanwhile
    assert time.monotonic() - started < interval + CLOSE_MARGIN_S
    await eventually(lambda: status(idle.node_id) == "offline")

    await bystander.heartbeat()
    assert await bystander.silent(0.5) == []
    assert status(bystander.node_id) == "ready"
    again = await FakeNode.connect(server.ws(), node_token)
    assert await register_refused(again, register_frame(node_id=idle.node_id)) == 4401
    await bystander.close()


# --- Ids ----------------------------------------------------------------------------------------


async def test_another_token_claiming_a_connected_id_is_closed_4409(stack, node_token, other_token):
    server = stack(worker=False)
    owner = await FakeNode.connect(server.ws(), node_token)
    ack = await owner.register()
    thief = await FakeNode.connect(server.ws(), other_token)
    assert await register_refused(thief, register_frame(node_id=ack["node_id"])) == 4409
    await owner.heartbeat()
    assert await owner.silent(0.5) == []
    assert status(ack["node_id"]) == "ready"

    # once offline, any token may claim it
    await owner.close()
    await eventually(lambda: status(ack["node_id"]) == "offline")
    heir = await FakeNode.connect(server.ws(), other_token)
    claimed = await heir.register(node_id=ack["node_id"])
    assert claimed["node_id"] == ack["node_id"] and claimed["status"] == "ready"
    await heir.close()


async def test_reconnect_keeps_the_id_and_replaces_the_old_socket(stack, node_token):
    server = stack(worker=False)
    first = await FakeNode.connect(server.ws(), node_token)
    ack = await first.register(node_id=None)
    node_id = ack["node_id"]
    await first.close()
    await eventually(lambda: status(node_id) == "offline")

    second = await FakeNode.connect(server.ws(), node_token)
    assert await second.register(node_id=node_id) == ack
    assert status(node_id) == "ready"

    # the same token and id again while the old socket is still open: the old one is closed 4409
    third = await FakeNode.connect(server.ws(), node_token)
    assert (await third.register(node_id=node_id))["node_id"] == node_id
    assert await second.closed() == 4409
    await third.heartbeat()
    assert await third.silent(0.5) == []
    assert status(node_id) == "ready", "the replaced socket closing does not take the node offline"
    assert pool_members("auto:zh-en") == [node_id]
    await third.close()


# --- Pools ------------------------------------------------------------------------------------


POOL_FILE = {"pools": [
    {"name": "zh-en-full", "priority": 20, "pairs": [["zh", "en"]], "required_services": ["asr", "nmt", "tts"]},
    {"name": "en-zh-text", "pairs": [["en", "zh"]], "required_services": ["asr", "nmt"]},
    {"name": "en-zh-speech", "pairs": [["en", "zh"]], "required_services": ["asr", "nmt", "tts"]},
    {"name": "zh-en-semantic", "pairs": [["zh", "en"]], "required_services": ["asr", "nmt", "semantic"]},
    {"name": "cjk", "languages": ["zh", "ja", "ko"], "required_services": ["asr", "nmt", "tts"]},
    {"name": "zh-en-off", "enabled": False, "pairs": [["zh", "en"]]},
]}


async def test_pool_memberships_follow_the_rules_and_imports_repool_live_nodes(stack, node_token):
    server = stack(worker=False)
    # both ways with speech
    both = await FakeNode.connect(server.ws(), node_token)
    await both.register(langs=["zh", "en"])
    # zh and en recognised, only en synthesised: zh→en with speech, en→zh as text only
    one_way = await FakeNode.connect(server.ws(), node_token)
    await one_way.register(langs=["zh", "en"], tts=["en"])
    # every CJK pair, with a semantic service too
    cjk = await FakeNode.connect(server.ws(), node_token)
    await cjk.register(langs=["zh", "ja", "ko", "en"], services=("asr", "nmt", "tts", "semantic"))
    # no tts service: in no automatic pool
    text_only = await FakeNode.connect(server.ws(), node_token)
    assert (await text_only.register(langs=["zh", "en"], services=("asr", "nmt")))["status"] == "registering"

    ids = {name: node.node_id for name, node in
           {"both": both, "one_way": one_way, "cjk": cjk, "text_only": text_only}.items()}

    def members(pool: str) -> set[str]:
        found = set(pool_members(pool))
        return {name for name, node_id in ids.items() if node_id in found}

    assert members("auto:zh-en") == {"both", "one_way", "cjk"}
    assert members("auto:en-zh") == {"both", "cjk"}
    assert members("auto:en~zh") == {"both", "cjk"}
    assert members("auto:ja~zh") == {"cjk"}
    assert members("auto:ja-ko") == {"cjk"}

    # the import republishes (pools_changed on commit) and re-pools connected nodes at once
    assert await sync_to_async(import_pools)(POOL_FILE) == len(POOL_FILE["pools"])
    assert members("zh-en-full") == {"both", "one_way", "cjk"}
    assert members("en-zh-text") == {"both", "one_way", "cjk", "text_only"}
    assert members("en-zh-speech") == {"both", "cjk"}
    assert members("zh-en-semantic") == {"cjk"}
    assert members("cjk") == {"cjk"}
    assert members("zh-en-off") == set()
    assert members("auto:zh-en") == {"both", "one_way", "cjk"}, "automatic pools stay alongside"
    assert status(ids["text_only"]) == "ready"

    # a node registering after the import is pooled by it as well
    late = await FakeNode.connect(server.ws(), node_token)
    await late.register(langs=["zh", "en"], services=("asr", "nmt"))
    ids["late"] = late.node_id
    assert members("en-zh-text") == {"both", "one_way", "cjk", "text_only", "late"}

    # a new file replaces the old one: gone pools lose their members, nodes in none are registering
    await sync_to_async(import_pools)({"pools": [
        {"name": "ja-ko", "pairs": [["ja", "ko"]], "required_services": ["asr"]},
    ]})
    assert members("en-zh-text") == set() and members("zh-en-full") == set()
    assert members("ja-ko") == {"cjk"}
    assert status(ids["text_only"]) == "registering" and status(ids["late"]) == "registering"

    # a node that leaves is out of every pool
    await cjk.close()
    await eventually(lambda: status(ids["cjk"]) == "offline")
    assert members("ja-ko") == set() and members("auto:ja~zh") == set()
    for node in (both, one_way, text_only, late):
        await node.close()


# --- Idle sockets -------------------------------------------------------------------------------


async def test_idle_node_socket_still_gets_jobs_after_more_than_five_seconds(stack, node_token):
    server = stack(worker=True)
    node = await FakeNode.connect(server.ws(), node_token)
    await node.register(langs=["zh", "en"])
    early = await FakeBrowser.connect(server.ws())
    assert (await early.init("zh", "en"))["type"] == "session_init_ack"

    await asyncio.sleep(6)  # longer than redis-py's default 5 s socket timeout; no frames at all

    late = await FakeBrowser.connect(server.ws())
    assert (await late.init("zh", "en"))["type"] == "session_init_ack"
    for browser in (late, early):
        await browser.say()
        job = await node.expect("job_assign")
        assert job["session_id"] == browser.session_id
        await node.send(node.result_for(job))
        result = await browser.ending()
        assert result["type"] == "translation_result"
        assert result["text_translated"] == f"translated 0 by {node.node_id}"
    for client in (node, early, late):
        await client.close()
