"""/metrics on two real daphne processes after scripted traffic: both answer the same, exact,
fleet-wide counts (everything is read from Redis, whichever process is scraped), and each
shows both processes' event-loop lag."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from tests.clients import FakeBrowser, FakeNode
from tests.staff import scrape

pytestmark = pytest.mark.e2e


class ScriptedNode:
    """A FakeNode that answers each job_assign by its ``mode``: ``result``, ``empty`` (a result
    with nothing in it), ``fail_first`` (fails attempt 1, answers later ones) or ``hold``."""

    def __init__(self, node: FakeNode, mode: str) -> None:
        self.node, self.mode = node, mode
        self.jobs: list[dict[str, Any]] = []
        self.cancels: list[dict[str, Any]] = []
        self.task = asyncio.ensure_future(self.serve())

    async def serve(self) -> None:
        while True:
            frame = await self.node.recv(timeout=3600)
            if frame["type"] == "job_cancel":
                self.cancels.append(frame)
            if frame["type"] != "job_assign":
                continue
            self.jobs.append(frame)
            if self.mode == "hold":
                continue
            if self.mode == "empty":
                answer = self.node.result_for(frame, text_asr="", text_translated="", tts_audio="")
            elif self.mode == "fail_first" and frame["attempt_id"] == 1:
                answer = self.node.result_for(frame, success=False, error={"code": "PROCESSING_ERROR", "message": "gpu fell over"})
            else:
                answer = self.node.result_for(frame)
            await self.node.send(answer)

    def stop(self) -> None:
        self.task.cancel()


async def node_on(server: Any, index: int, token: str, mode: str, **register: Any) -> ScriptedNode:
    node = await FakeNode.connect(server.ws(index), token)
    await node.register(**register)
    return ScriptedNode(node, mode)


async def browser_on(server: Any, index: int, src: str, tgt: str) -> FakeBrowser:
    browser = await FakeBrowser.connect(server.ws(index))
    ack = await browser.init(src, tgt)
    assert ack["type"] == "session_init_ack", ack
    return browser


EXPECTED = {
    'scheduler_jobs_total{outcome="result"}': 4,
    'scheduler_jobs_total{outcome="missing"}': 1,
    'scheduler_jobs_total{outcome="error"}': 1,
    'scheduler_jobs_total{outcome="cancelled"}': 1,
    "scheduler_reassignments_total": 1,
    'scheduler_no_available_node_total{pool="auto:th-vi"}': 1,
    'scheduler_nodes{status="registering"}': 1,
    'scheduler_nodes{status="ready"}': 5,
    'scheduler_nodes{status="draining"}': 1,
    'scheduler_nodes{status="offline"}': 1,
    'scheduler_slots{state="used"}': 0,
    'scheduler_slots{state="total"}': 17,
    "scheduler_node_full_total": 1,
    'scheduler_frames_rejected_total{code="INVALID_MESSAGE"}': 1,
    'scheduler_frames_ignored_total{type="tts_started"}': 1,
    'scheduler_frames_ignored_total{type="job_result"}': 1,
    "scheduler_workers_alive": 1,
    "scheduler_dispatch_seconds_count": 6,
    'scheduler_dispatch_seconds_bucket{le="+Inf"}': 6,
    "scheduler_jobs_in_flight": 0,
}


async def test_two_processes_report_the_same_exact_fleet_counts(stack, node_token):
    server = stack(servers=2, SCHEDULER_DISPATCH_WAIT_S=1)
    a = await node_on(server, 0, node_token, "result", langs=["zh", "en"], slots=4)
    failing = [await node_on(server, i, node_token, "fail_first", langs=["fr", "de"], slots=2) for i in (0, 1)]
    holder = await node_on(server, 1, node_token, "hold", langs=["es", "it"], slots=1)
    empty = await node_on(server, 0, node_token, "empty", langs=["ko", "ja"], slots=4)
    registering = await FakeNode.connect(server.ws(1), node_token)
    assert (await registering.register(langs=["zh", "en"], services=("asr",), slots=2))["status"] == "registering"
    drained = await FakeNode.connect(server.ws(0), node_token)
    await drained.register(langs=["pt", "ru"], slots=2)
    await drained.send({"type": "node_control", "command": "drain"})
    assert (await drained.expect(lambda f: f.get("command") == "drained"))["type"] == "node_control"
    gone = await FakeNode.connect(server.ws(1), node_token)
    await gone.register(langs=["pt", "ru"], slots=3)
    await gone.close()

    zh_en = await browser_on(server, 0, "zh", "en")
    for index in range(3):
        await zh_en.utterance(index)
    assert sorted([(await zh_en.ending())["type"] for _ in range(3)]) == ["translation_result"] * 3
    await zh_en.send("not json")
    assert (await zh_en.expect("error"))["code"] == "INVALID_MESSAGE"
    await zh_en.send({"type": "tts_started", "session_id": zh_en.session_id})
    await a.node.send(a.node.result_for(a.jobs[0]))  # a second answer to an ended job: ignored

    fr_de = await browser_on(server, 1, "fr", "de")
    await fr_de.utterance(0)
    result = await fr_de.ending()
    assert result["type"] == "translation_result"
    assert sorted(len(node.jobs) for node in failing) == [1, 1], "attempt 2 went to the other node"

    es_it = await browser_on(server, 0, "es", "it")
    await es_it.utterance(0)
    await es_it.expect(lambda f: f.get("event") == "DISPATCHED")
    await es_it.send({"type": "session_close", "session_id": es_it.session_id})
    await es_it.expect("session_close_ack")

    ko_ja = await browser_on(server, 1, "ko", "ja")
    await ko_ja.utterance(0)
    assert (await ko_ja.ending())["type"] == "missing_result"

    th_vi = await browser_on(server, 0, "th", "vi")
    await th_vi.utterance(0)
    assert (await th_vi.ending())["code"] == "NO_AVAILABLE_NODE"

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while True:
        _, first = await sync_to_async(scrape)(server, 0)
        missing = {name: (first.get(name), want) for name, want in EXPECTED.items() if first.get(name) != want}
        if not missing:
            break
        assert loop.time() < deadline, f"counts never reached: {missing}"
        await asyncio.sleep(0.2)
    text0, first = await sync_to_async(scrape)(server, 0)
    text1, second = await sync_to_async(scrape)(server, 1)
    # Each process's loop-lag histogram grows with every tick: both scrapes list both processes,
    # the rest is equal.
    lag = "scheduler_event_loop_lag_seconds"
    processes = {f'{{process="{socket.gethostname()}:{process.pid}"}}' for process in server.servers if process}
    for samples in (first, second):
        assert {name.removeprefix(f"{lag}_count") for name in samples if name.startswith(f"{lag}_count")} == processes
    first, second = ({k: v for k, v in samples.items() if not k.startswith(lag)} for samples in (first, second))
    assert first == second
    assert {name: first[name] for name in EXPECTED} == EXPECTED
    assert len(holder.cancels) == 1 and holder.cancels[0]["reason"] == "session_closed"

    # the histogram is cumulative and its buckets are the documented ones
    buckets = [(name, value) for name, value in first.items() if name.startswith("scheduler_dispatch_seconds_bucket")]
    assert [name.split('"')[1] for name, _ in buckets] == [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"
    ]
    assert [value for _, value in buckets] == sorted(value for _, value in buckets)
    assert first["scheduler_dispatch_seconds_sum"] >= 0
    for family in ("scheduler_dispatch_seconds histogram", "scheduler_jobs_total counter", "scheduler_nodes gauge",
                   "scheduler_slots gauge", "scheduler_workers_alive gauge"):
        assert f"# TYPE {family}\n" in text0

    for node in (a, *failing, holder, empty):
        node.stop()
