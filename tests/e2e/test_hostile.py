"""A hostile world on real processes: fuzzed frames, floods, and every protocol close code
(but 4403, the dashboard's, tested with it)."""

from __future__ import annotations

import asyncio
import json
import statistics
import time

import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatch import selectors
from dispatch.protocol import ErrorCode
from tests.clients import AUDIO_B64, FakeBrowser, FakeNode, eventually, register_frame

pytestmark = pytest.mark.e2e

CODES = {code.value for code in ErrorCode}
PROTOCOL_CLOSES = {1008, 1009, 1012, 4401, 4409}

SESSION_TYPES = ["session_init", "audio_chunk", "utterance", "client_heartbeat", "session_close", "tts_started",
                 "room_create", "room_join", "room_leave", "room_raw_voice_preference", "webrtc_offer",
                 "webrtc_answer", "webrtc_ice", "bogus"]
NODE_TYPES = ["node_register", "node_heartbeat", "job_result", "asr_partial", "job_ack", "job_started",
              "node_error", "node_control", "tts_started", "bogus"]
FIELDS = ["session_id", "seq", "is_final", "payload", "src_lang", "tgt_lang", "lang_a", "lang_b", "mode",
          "utterance_index", "audio", "audio_format", "sample_rate", "client_version", "platform", "node_id",
          "job_id", "attempt_id", "success", "text", "language_capabilities", "capability_by_type",
          "installed_services", "max_concurrent_jobs", "command", "resource_usage", "trace_id", "pipeline",
          "room_code", "to", "sdp", "candidate", "target_session_id", "receive_raw_voice", "display_name",
          "preferred_lang"]
values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False)
    | st.text(max_size=30) | st.sampled_from(["zh", "en", "auto", "AAAA", AUDIO_B64[:64], "node-0000abcd", "123456"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)


def frames(types: list[str]) -> st.SearchStrategy[str | bytes]:
    objects = st.fixed_dictionaries(
        {"type": st.sampled_from(types) | st.text(max_size=12)},
        optional={name: values for name in FIELDS},
    ).map(json.dumps)
    junk = st.text(max_size=80) | st.binary(max_size=80) | values.map(json.dumps)
    return st.one_of(objects, objects, objects, junk)


async def fuzz(url: str, batch: list[str | bytes], good: FakeBrowser, node: FakeNode, index: int) -> None:
    socket = await websockets.connect(url, max_size=None)
    for raw in batch:
        try:
            await socket.send(raw)
        except websockets.ConnectionClosed:
            pass
        try:
            while True:
                text = await asyncio.wait_for(socket.recv(), 0.05)
                assert "Traceback" not in text and "File \"" not in text
                frame = json.loads(text)
                if frame.get("type") == "error":
                    assert frame["code"] in CODES and isinstance(frame["message"], str) and frame["message"]
        except TimeoutError:
            pass
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code in PROTOCOL_CLOSES | {1000}
            socket = await websockets.connect(url, max_size=None)
    await socket.close()
    # the well-behaved pair beside the fuzzer keeps getting results
    await good.utterance(index)
    job = await node.expect("job_assign")
    await node.send(node.result_for(job))
    result = await good.ending()
    assert result["type"] == "translation_result" and result["utterance_index"] == index


@pytest.fixture
def fuzz_stack(stack, node_token):
    server = stack(SCHEDULER_RATE_LIMIT_PER_S=100000, SCHEDULER_NODE_AUTH="open")
    return server, node_token


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.data_too_large, HealthCheck.too_slow],
)
@given(session_batch=st.lists(frames(SESSION_TYPES), min_size=15, max_size=15),
       node_batch=st.lists(frames(NODE_TYPES), min_size=15, max_size=15))
def test_fuzzed_frames_never_crash_and_get_protocol_answers(fuzz_stack, session_batch, node_batch):
    server, token = fuzz_stack

    async def scenario() -> None:
        node = await FakeNode.connect(server.ws(), token)
        await node.register(langs=["zh", "en"], slots=8)
        good = await FakeBrowser.connect(server.ws())
        await good.init("zh", "en")
        await fuzz(f"{server.ws()}/ws/session", session_batch, good, node, 0)
        await fuzz(f"{server.ws()}/ws/node", node_batch, good, node, 1)
        await good.close()
        await node.close()

    asyncio.run(scenario())
    assert all(process.poll() is None for process in server.servers)


async def test_flood_gets_rate_limited_then_closed_1008_while_others_are_served(stack, node_token):
    server = stack(SCHEDULER_RATE_LIMIT_PER_S=20, SCHEDULER_SESSION_MAX_INFLIGHT=2)
    node = await FakeNode.connect(server.ws(), node_token)
    await node.register(langs=["zh", "en"], slots=16)

    async def answer_slowly() -> None:
        while True:
            job = await node.expect("job_assign", timeout=3600)
            asyncio.get_running_loop().call_later(
                0.3, lambda job=job: asyncio.ensure_future(node.send(node.result_for(job)))
            )

    answering = asyncio.ensure_future(answer_slowly())
    latencies: list[float] = []

    async def polite(count: int) -> None:
        browser = await FakeBrowser.connect(server.ws())
        await browser.init("zh", "en")
        for index in range(count):
            started = time.monotonic()
            await browser.utterance(index)
            assert (await browser.ending())["type"] == "translation_result"
            latencies.append(time.monotonic() - started)

    async def flooder() -> tuple[int, int | None, float]:
        browser = await FakeBrowser.connect(server.ws())
        await browser.init("zh", "en")
        warnings, started = 0, time.monotonic()
        heartbeat = json.dumps({"type": "client_heartbeat", "session_id": browser.session_id, "timestamp": 1})
        try:
            while time.monotonic() - started < 15:
                await browser.ws.send(heartbeat)
                await asyncio.sleep(0.002)
                while True:
                    try:
                        frame = json.loads(await asyncio.wait_for(browser.ws.recv(), 0.0005))
                    except TimeoutError:
                        break
                    if frame["type"] == "error":
                        assert frame["code"] == "RATE_LIMITED"
                        warnings += 1
        except websockets.ConnectionClosed as closed:
            return warnings, closed.rcvd.code if closed.rcvd else None, time.monotonic() - started
        return warnings, None, time.monotonic() - started

    async def queue_flooder() -> list[dict]:
        browser = await FakeBrowser.connect(server.ws())
        await browser.init("zh", "en")
        for index in range(10):
            await browser.utterance(index)
        refused = [await browser.expect(lambda f: f.get("code") == "RATE_LIMITED") for _ in range(6)]
        endings = [await browser.ending() for _ in range(4)]
        await browser.send({"type": "client_heartbeat", "session_id": browser.session_id, "timestamp": 1})
        assert (await browser.expect("server_heartbeat"))["session_id"] == browser.session_id  # still open
        return refused + endings

    flood, queued, *_ = await asyncio.gather(flooder(), queue_flooder(), polite(10), polite(10))
    answering.cancel()
    warnings, code, lasted = flood
    print(f"\nflood: {warnings} RATE_LIMITED warnings, closed {code} after {lasted:.1f} s; "
          f"polite sessions: {len(latencies)} results, latency p50 {statistics.median(latencies) * 1000:.0f} ms, "
          f"max {max(latencies) * 1000:.0f} ms")
    assert code == 1008
    assert 1 <= warnings <= lasted + 1  # at most one a second
    assert sorted(f["utterance_index"] for f in queued[:6]) == [4, 5, 6, 7, 8, 9]
    assert sorted(f["utterance_index"] for f in queued[6:]) == [0, 1, 2, 3]
    assert len(latencies) == 20


async def test_close_codes(stack, node_token):
    server = stack(SCHEDULER_MAX_FRAME_BYTES=4096, SCHEDULER_HEARTBEAT_INTERVAL_S=1)
    # 4401: no token
    anonymous = await FakeNode.connect(server.ws(), None)
    assert await anonymous.closed() == 4401
    # 1009: a frame over the limit, on both sockets, through real daphne
    browser = await FakeBrowser.connect(server.ws())
    await browser.send("x" * 5000)
    assert await browser.closed() == 1009
    big = await FakeNode.connect(server.ws(), node_token)
    await big.send(json.dumps(register_frame() | {"padding": "y" * 5000}))
    assert await big.closed() == 1009
    # 4409: the same node id connecting again replaces the older socket
    first = await FakeNode.connect(server.ws(), node_token)
    await first.register(langs=["zh", "en"])
    second = await FakeNode.connect(server.ws(), node_token)
    await second.register(langs=["zh", "en"], node_id=first.node_id)
    assert await first.closed() == 4409
    # 1012: the lease expires while the socket is open (no heartbeats for 3 × 1 s)
    assert await second.closed(timeout=10) == 1012
    # 1012: the server stops (SIGTERM): node sockets are closed so nodes reconnect elsewhere
    third = await FakeNode.connect(server.ws(), node_token)
    await third.register(langs=["zh", "en"])
    await asyncio.to_thread(server.stop_server, 0)
    assert await third.closed() == 1012


async def test_a_flooding_node_is_rate_limited_then_closed_1008_while_another_nodes_jobs_go_on(stack, node_token):
    server = stack(SCHEDULER_NODE_RATE_LIMIT_PER_S=20)
    flooding = await FakeNode.connect(server.ws(), node_token)
    await flooding.register(langs=["ja", "ko"], slots=4)
    working = await FakeNode.connect(server.ws(), node_token)
    await working.register(langs=["zh", "en"], slots=4)

    async def answer() -> None:
        while True:
            job = await working.expect("job_assign", timeout=3600)
            await working.send(working.result_for(job))

    answering = asyncio.ensure_future(answer())

    async def flood() -> tuple[int, int | None, float]:
        warnings, started = 0, time.monotonic()
        heartbeat = json.dumps({"type": "node_heartbeat", "node_id": flooding.node_id, "timestamp": 1})
        try:
            while time.monotonic() - started < 15:
                await flooding.ws.send(heartbeat)
                await asyncio.sleep(0.002)
                while True:
                    try:
                        frame = json.loads(await asyncio.wait_for(flooding.ws.recv(), 0.0005))
                    except TimeoutError:
                        break
                    assert frame["type"] == "error" and frame["code"] == "RATE_LIMITED", frame
                    warnings += 1
        except websockets.ConnectionClosed as closed:
            return warnings, closed.rcvd.code if closed.rcvd else None, time.monotonic() - started
        return warnings, None, time.monotonic() - started

    async def browse() -> list[dict]:
        browser = await FakeBrowser.connect(server.ws())
        await browser.init("zh", "en")
        endings = []
        for index in range(12):
            await browser.utterance(index)
            endings.append(await browser.ending())
            await asyncio.sleep(0.4)  # through the whole flood
        await browser.close()
        return endings

    (warnings, code, lasted), endings = await asyncio.gather(flood(), browse())
    answering.cancel()
    print(f"\nnode flood: {warnings} RATE_LIMITED warnings, closed {code} after {lasted:.1f} s")
    assert code == 1008
    assert lasted >= 4 and 1 <= warnings <= lasted + 1  # at most one a second; closed in the 5th second of drops
    assert [f["type"] for f in endings] == ["translation_result"] * 12
    assert {f["text_translated"].rsplit(" ", 1)[-1] for f in endings} == {working.node_id}
    await eventually(lambda: selectors.node_record(flooding.node_id)["status"] == "offline")
    await working.close()
