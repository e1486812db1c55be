"""The staff dashboard through the whole ASGI application, in this process, on the real Redis:
who may see it, what its socket pushes, drain/resume from it, the admin's pair preview, and
how a job's story is told. The fleet summary the frames read is computed by the worker's own
summary loop, run in this process."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient, Client

from dispatch import fleet, fleet_summary, keys, selectors, store
from nodes.story import story_told
from pools.config import import_pools
from schedulerproj.asgi import application
from tests.clients import register_frame
from tests.staff import login_cookie

TIMEOUT = 5.0
HOST = "testserver"


class Socket:
    """A WebSocket through the ASGI application, as daphne would drive it."""

    def __init__(self, path: str, headers: list[tuple[bytes, bytes]]) -> None:
        self.comm = WebsocketCommunicator(application, path, headers)
        self.open = False

    async def connect(self) -> bool:
        accepted, _ = await self.comm.connect(timeout=TIMEOUT)
        self.open = accepted
        return accepted

    async def send(self, frame: dict[str, Any]) -> None:
        await self.comm.send_input({"type": "websocket.receive", "text": json.dumps(frame)})

    async def recv(self) -> dict[str, Any]:
        out = await self.comm.receive_output(TIMEOUT)
        assert out["type"] == "websocket.send", out
        return json.loads(out["text"])

    async def expect(self, match: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        for _ in range(int(timeout * 20)):
            frame = await self.recv()
            if match(frame):
                return frame
        raise AssertionError("no matching frame")

    async def closed(self) -> int:
        out = await self.comm.receive_output(TIMEOUT)
        assert out["type"] == "websocket.close", out
        return int(out.get("code", 1000))

    async def disconnect(self) -> None:
        if self.open:
            self.open = False
            await self.comm.disconnect(timeout=TIMEOUT)


def dashboard_socket(cookie: str | None, origin: str | None = f"http://{HOST}") -> Socket:
    headers = [(b"host", HOST.encode())]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    if origin:
        headers.append((b"origin", origin.encode()))
    return Socket("/ws/dashboard", headers)


@pytest.fixture
async def sockets(published: str, transactional_db: None) -> AsyncIterator[Callable[..., Socket]]:
    made: list[Socket] = []

    def make(socket: Socket) -> Socket:
        made.append(socket)
        return socket

    yield make
    for socket in made:
        try:
            await socket.disconnect()
        except Exception:  # an application already stopped by a failed test
            pass


@pytest.fixture
async def summarised(published: str) -> AsyncIterator[None]:
    """The worker's fleet summary loop, in this process (claimed once a second, as in the worker)."""
    stop = asyncio.Event()
    task = asyncio.ensure_future(fleet_summary.summary_loop(stop, "test-worker"))
    yield
    stop.set()
    await task


async def node_up(sockets: Callable[..., Socket], token: str, load: dict[str, Any], **register: Any) -> tuple[Socket, str]:
    node = sockets(Socket(f"/ws/node?token={token}", []))
    assert await node.connect()
    await node.send(register_frame(**register))
    ack = await node.recv()
    assert ack["type"] == "node_register_ack", ack
    await node.send({"type": "node_heartbeat", "node_id": ack["node_id"], "timestamp": 0, "resource_usage": load})
    return node, ack["node_id"]


# --- Who may see it ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/dashboard/", "/dashboard/jobs/", "/dashboard/jobs/job-00/"])
def test_pages_send_others_to_the_admin_login(path, published, client: Client):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={path}"
    client.cookies.load(login_cookie(staff=False))
    response = client.get(path)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    client.cookies.load(login_cookie(staff=True))
    response = client.get(path)
    assert response.status_code == (404 if path.endswith("job-00/") else 200)


async def test_the_page_opens_its_socket_and_ships_its_own_scripts(published, transactional_db):
    client = AsyncClient()
    client.cookies.load(await sync_to_async(login_cookie)(staff=True))
    page = (await client.get("/dashboard/")).content.decode()
    assert "dashboard/dashboard.js" in page and "dashboard/charts.js" in page
    assert "No node has connected yet" in page and "node_token create" in page
    assert "<script src=\"http" not in page, "nothing is fetched from elsewhere at run time"


async def test_socket_refuses_non_staff_with_4403_and_other_origins_at_the_handshake(sockets, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://scheduler.example"]  # the site's name behind a proxy
    anonymous = sockets(dashboard_socket(None))
    assert await anonymous.connect()
    assert await anonymous.closed() == 4403
    user = sockets(dashboard_socket(await sync_to_async(login_cookie)(staff=False)))
    assert await user.connect()
    assert await user.closed() == 4403
    staff = await sync_to_async(login_cookie)(staff=True)
    for origin in ("http://evil.example", f"http://{HOST}:8080", None):
        refused = sockets(dashboard_socket(staff, origin=origin))
        assert not await refused.connect(), origin
    allowed = sockets(dashboard_socket(staff))
    assert await allowed.connect()
    snapshot = await allowed.recv()
    assert snapshot["type"] == "snapshot"
    assert snapshot["totals"]["node_count"] == 0 and snapshot["nodes"] == []
    proxied = sockets(dashboard_socket(staff, origin="https://scheduler.example"))
    assert await proxied.connect()
    assert (await proxied.recv())["type"] == "snapshot"


# --- What it shows, and drains -----------------------------------------------------------------


async def test_snapshot_shows_each_node_and_pool_and_drains_from_the_socket(sockets, node_token, summarised):
    await sync_to_async(import_pools)({"pools": [{"name": "zh-en", "priority": 10, "pairs": [["zh", "en"]]}]})
    load_a = {"cpu_percent": 41.0, "gpu_percent": 77.0, "gpu_mem_percent": 60.0, "mem_percent": 33.0, "running_jobs": 2}
    load_b = {"cpu_percent": 5.0, "mem_percent": 12.0, "running_jobs": 0}
    node_a, a = await node_up(sockets, node_token, load_a, langs=["zh", "en"], slots=3)
    _, b = await node_up(sockets, node_token, load_b, langs=["fr", "de", "es"], slots=2)
    staff = sockets(dashboard_socket(await sync_to_async(login_cookie)(staff=True)))
    assert await staff.connect()

    def both_reported(frame: dict[str, Any]) -> bool:
        rows = {row["id"]: row for row in frame.get("nodes", [])}
        counted = frame.get("totals", {}).get("nodes", {}).get("ready") == 2  # by a summary since
        return {a, b} <= set(rows) and rows[a]["cpu"] == 41.0 and rows[b]["cpu"] == 5.0 and counted

    snapshot = await staff.expect(both_reported)
    row_a = next(row for row in snapshot["nodes"] if row["id"] == a)
    row_b = next(row for row in snapshot["nodes"] if row["id"] == b)
    assert row_a | {"heartbeat_age_s": 0} == {
        "id": a, "status": "ready", "pools": ["zh-en"], "auto_pools": 3, "pairs": 2, "pairs_text": "en→zh, zh→en",
        "services": ["asr", "nmt", "tts"], "used": 0, "slots": 3, "free": 3, "cpu": 41.0, "gpu": 77.0, "gpu_mem": 60.0,
        "mem": 33.0, "running_jobs": 2, "heartbeat_age_s": 0, "jobs_done": 0, "jobs_failed": 0, "median_ms": None,
        "ejected_s": None, "eject_reason": None,
    }
    assert row_b["pools"] == [] and row_b["auto_pools"] == 9 and row_b["slots"] == 2 and row_b["gpu"] is None
    assert row_b["pairs_text"] == "de→es, de→fr, es→de, es→fr, fr→de, fr→es"
    assert snapshot["totals"]["nodes"] == {"ready": 2, "registering": 0, "draining": 0, "offline": 0}
    assert (snapshot["totals"]["slots_used"], snapshot["totals"]["slots_total"]) == (0, 5)
    pools = {pool["name"]: pool for pool in snapshot["pools"]}
    assert snapshot["pool_names"][0] == "zh-en", "admin pools come first"
    assert pools["zh-en"] | {"p50_ms": None} == {
        "name": "zh-en", "admin": True, "members": 1, "ready_nodes": 1, "free": 3, "total": 3, "jobs_per_min": 0,
        "jobs_15m": 0, "p50_ms": None, "p95_ms": None, "no_available": 0,
    }
    assert pools["auto:fr-de"]["ready_nodes"] == 1 and pools["auto:fr-de"]["total"] == 2

    assert snapshot["page"] == {"index": 0, "size": 50, "rows": 2, "pages": 1, "built": True}

    await staff.send({"type": "view", "pool": "zh-en", "status": ""})
    narrowed = await staff.expect(lambda f: f.get("type") == "snapshot" and f["view"]["pool"] == "zh-en" and f["page"]["built"])
    assert [row["id"] for row in narrowed["nodes"]] == [a]
    assert [pool["name"] for pool in narrowed["pools"]] == ["zh-en"]

    await staff.send({"type": "drain", "node_id": a})
    told = await staff.expect(lambda f: f.get("type") == "notice")
    assert told["message"] == f"{a} is now draining."
    control = await node_a.recv()
    assert control == {"type": "node_control", "command": "drain", "reason": control["reason"]}
    assert control["reason"].startswith("by staff-")
    assert (await node_a.recv())["command"] == "drained"
    drained = await staff.expect(
        lambda f: f.get("type") == "snapshot" and f["nodes"] and f["nodes"][0]["status"] == "draining"
        and f["pools"][0]["ready_nodes"] == 0  # the next summary's figures
    )
    assert selectors.pool_members("zh-en") == [] and drained["totals"]["nodes"]["draining"] == 1

    await staff.send({"type": "view", "pool": "", "status": "draining"})
    only = await staff.expect(
        lambda f: f.get("type") == "snapshot" and f["view"]["status"] == "draining" and f["page"]["rows"] == 1
    )
    assert [row["id"] for row in only["nodes"]] == [a]

    await staff.send({"type": "resume", "node_id": a})
    assert (await staff.expect(lambda f: f.get("type") == "notice"))["message"] == f"{a} is now ready."
    assert selectors.pool_members("zh-en") == [a]
    await staff.send({"type": "drain", "node_id": "node-00000000"})
    assert (await staff.expect(lambda f: f.get("type") == "notice"))["level"] == "error"


async def test_an_ejected_node_shows_why_and_for_how_long_and_staff_end_it(sockets, summarised, node_token, settings):
    from tests.dispatch.test_ejection import fail_on, jobs_on

    settings.SCHEDULER_EJECT_BASE_S = settings.SCHEDULER_EJECT_MAX_S = 60
    _, bad = await node_up(sockets, node_token, {}, langs=["zh", "en"])
    await node_up(sockets, node_token, {}, langs=["zh", "en"])
    await fail_on(bad, 3)
    staff = sockets(dashboard_socket(await sync_to_async(login_cookie)(staff=True)))
    assert await staff.connect()
    snapshot = await staff.expect(lambda f: f.get("type") == "snapshot" and len(f["nodes"]) == 2)
    row = next(row for row in snapshot["nodes"] if row["id"] == bad)
    assert 58 <= row["ejected_s"] <= 60 and row["eject_reason"] == "error PROCESSING_ERROR"
    await staff.send({"type": "eject_end", "node_id": bad})
    assert (await staff.expect(lambda f: f.get("type") == "notice"))["message"] == f"{bad} takes jobs again."
    after = await staff.expect(lambda f: f.get("type") == "snapshot")
    row = next(row for row in after["nodes"] if row["id"] == bad)
    assert (row["ejected_s"], row["eject_reason"]) == (None, None)
    await jobs_on(bad, 1, failing=set())
    await staff.send({"type": "eject_end", "node_id": "node-00000000"})
    assert (await staff.expect(lambda f: f.get("type") == "notice"))["level"] == "error"


async def test_pair_preview_lists_the_route_and_who_has_a_free_slot(sockets, node_token, client: Client):
    await sync_to_async(import_pools)(
        {"pools": [
            {"name": "premium", "priority": 20, "required_services": ["asr", "nmt", "tts", "semantic"], "pairs": [["zh", "en"]]},
            {"name": "standard", "priority": 10, "pairs": [["zh", "en"]]},
        ]}
    )
    load = {"cpu_percent": 1.0, "mem_percent": 1.0, "running_jobs": 0}
    _, first = await node_up(sockets, node_token, load, langs=["zh", "en"], slots=2, services=("asr", "nmt", "tts", "semantic"))
    _, second = await node_up(sockets, node_token, load, langs=["zh", "en"], slots=1)
    await sync_to_async(store.sync_client().hset)(keys.node(second), "used", 1)  # its one slot taken

    previews = await sync_to_async(selectors.pair_preview)("zh>en")
    assert [(p.pool, p.strategy) for p in previews] == [("premium", "random"), ("standard", "random"), ("auto:zh-en", "random")]
    assert [(m.node_id, m.free, m.eligible) for m in previews[0].members] == [(first, 2, True)]
    assert [(m.node_id, m.free, m.eligible) for m in previews[1].members] == [(first, 2, True), (second, 0, False)]

    await sync_to_async(client.cookies.load)(await sync_to_async(login_cookie)(staff=True, superuser=True))
    page = (await sync_to_async(client.get)("/admin/pools/pool/preview/", {"src_lang": "zh", "tgt_lang": "en"})).content.decode()
    assert 'A job now would go to pool <strong id="first-pool">premium</strong>' in page
    assert page.index('data-pool="premium"') < page.index('data-pool="standard"') < page.index('data-pool="auto:zh-en"')
    assert f'class="member" data-node="{second}"' in page and "no (full)" in page
    listing = (await sync_to_async(client.get)("/admin/pools/pool/")).content.decode()
    assert "/admin/pools/pool/preview/" in listing
    nobody = (await sync_to_async(client.get)("/admin/pools/pool/preview/", {"src_lang": "th", "tgt_lang": "vi"})).content.decode()
    assert "No pool of the route has a ready node with a free slot now" in nobody


async def test_a_worker_pass_says_it_is_alive_and_a_summary_samples_the_load_once_per_slot(sockets, node_token):
    from dispatch import history
    from dispatch.worker import worker_tick

    load = {"cpu_percent": 30.0, "gpu_percent": 50.0, "mem_percent": 1.0, "running_jobs": 0}
    await node_up(sockets, node_token, load, langs=["zh", "en"], slots=3)
    await node_up(sockets, node_token, {**load, "cpu_percent": 10.0}, langs=["zh", "en"], slots=2)
    assert (await fleet.fleet_live()).workers_alive == 0
    slot = int(time.time()) // selectors.HISTORY_SAMPLE_S
    await worker_tick()
    assert (await fleet.fleet_live()).workers_alive == 1
    assert await fleet_summary.summary_claimed("test-worker")
    samples = (await fleet.dashboard_read(fleet.DEFAULT_VIEW)).samples
    assert [(s["used"], s["total"], s["ready"], s["cpu"], s["gpu"]) for s in samples] == [(0, 5, 2, 20.0, 50.0)]
    took = await history.fleet_sample(await fleet_summary.summary_compute("another-copy"))
    if int(time.time()) // selectors.HISTORY_SAMPLE_S == slot:
        assert not took, "one sample per slot, whichever worker copy comes first"
    staff = sockets(dashboard_socket(await sync_to_async(login_cookie)(staff=True)))
    assert await staff.connect()
    snapshot = await staff.recv()
    assert snapshot["history"]["load"][:1] == samples and snapshot["totals"]["workers_alive"] == 1
    assert len(snapshot["history"]["jobs"]) == 16 and {p["placed"] for p in snapshot["history"]["jobs"]} == {0}


# --- A job's story -------------------------------------------------------------------------------


def test_story_tells_pools_passed_over_the_pick_and_a_late_answer():
    story = {
        "job_id": "job-1", "session": "s-1", "trace": "t-1", "utt": "4", "need": "en~zh",
        "route": json.dumps([["premium", "least_loaded"], ["auto:en~zh", "random"]]),
        "cut_ms": "1000",
        "attempts": json.dumps([
            {"attempt": 1, "pool": "premium", "strategy": "least_loaded", "node": "node-a", "at_ms": 1012,
             "looked": [{"pool": "premium", "candidates": ["node-b=1", "node-a=3"]}]},
            {"attempt": 2, "pool": "auto:en~zh", "strategy": "random", "node": "node-c", "at_ms": 61020,
             "looked": [{"pool": "premium", "candidates": ["node-b=0"]}, {"pool": "auto:en~zh", "candidates": ["node-c=2"]}]},
        ]),
        "events": json.dumps([{"at_ms": 61010, "event": "timeout", "node": "node-a", "attempt": 1, "code": "JOB_TIMEOUT"}]),
        "ending": json.dumps({"kind": "result", "node": "node-a", "attempt_id": 1, "result": {}}),
        "ended_ms": "61500",
    }
    told = story_told(story)
    assert told["pair"] == "en ⇄ zh (two-way)" and told["nodes"] == ["node-a", "node-c"]
    first, second = told["attempts"]
    assert first["why"] == "pool premium: the most free slots among the 2 sampled (least_loaded), 3 free."
    assert first["after_cut_ms"] == 12
    assert second["why"] == (
        "pool premium had no ready node with a free slot (checked node-b (0 free)); pool auto:en~zh: the first "
        "node with a free slot in a random order (random), 2 free; nodes that already had the job were skipped."
    )
    assert told["events"][0]["text"] == "attempt 1 on node-a timed out (JOB_TIMEOUT); job_cancel timeout sent to it"
    assert told["ending_text"] == (
        "translation_result from node-a (attempt 1); a late answer of an earlier attempt won, "
        "job_cancel completed sent to node-c"
    )
    assert told["ended_after_ms"] == 60500

    unplaced = story_told({"job_id": "job-2", "need": "th>vi", "route": json.dumps([["auto:th-vi", "random"]]),
                           "cut_ms": "5", "attempts": "[]", "ending": json.dumps({"kind": "error", "code": "NO_AVAILABLE_NODE"}),
                           "ended_ms": "10005"})
    assert unplaced["attempts"] == [] and unplaced["ending_text"] == "error NO_AVAILABLE_NODE"
    assert story_told({"job_id": "job-3", "need": "zh>en", "cut_ms": "1", "attempts": "[]",
                       "ending": json.dumps({"kind": "cancelled", "reason": "session_closed"})})["ending_text"] == (
        "cancelled (session_closed); job_cancel sent to the node that held it"
    )


def test_story_tells_turn_affinity_and_ejections():
    story = {
        "job_id": "job-4", "session": "s-1", "trace": "t-1", "utt": "7", "need": "zh>en",
        "route": json.dumps([["auto:zh-en", "random"]]), "cut_ms": "1000",
        "attempts": json.dumps([
            {"attempt": 1, "pool": "auto:zh-en", "strategy": "affinity", "node": "node-a", "at_ms": 1002,
             "turn": "node-a=2", "looked": [{"pool": "auto:zh-en", "candidates": ["node-a=2"]}]},
            {"attempt": 2, "pool": "auto:zh-en", "strategy": "random", "node": "node-c", "at_ms": 1050,
             "looked": [{"pool": "auto:zh-en", "candidates": ["node-b=ejected", "node-c=4"]}]},
        ]),
        "events": json.dumps([
            {"at_ms": 1040, "event": "failed", "node": "node-a", "attempt": 1, "code": "PROCESSING_ERROR"},
            {"at_ms": 1040, "event": "ejected", "node": "node-a", "until_ms": 31040},
            {"at_ms": 1040, "event": "not_ejected", "node": "node-a", "pool": "auto:zh-en"},
        ]),
    }
    first, second = story_told(story)["attempts"]
    assert first["why"] == (
        "pool auto:zh-en: the node of the turn's previous piece, still ready with a free slot (turn affinity), 2 free."
    )
    assert second["looked"][0]["candidates"][0] == {"node": "node-b", "free": "ejected"}
    events = [event["text"] for event in story_told(story)["events"]]
    assert events[1] == "node-a was ejected after failures in a row: no new job until 1970-01-01 00:00:31.040 UTC"
    assert events[2] == "node-a failed again, but was not ejected: it is one of the last ready nodes of auto:zh-en"
    moved = dict(story, attempts=json.dumps([
        {"attempt": 1, "pool": "auto:zh-en", "strategy": "random", "node": "node-c", "at_ms": 1002, "turn": "node-a=0",
         "looked": [{"pool": "auto:zh-en", "candidates": ["node-c=4"]}]},
    ]))
    assert story_told(moved)["attempts"][0]["why"].endswith("; the turn's node could not take it (node-a=0).")
