"""The browser socket ``/ws/session`` (docs/protocol.md) through the full ASGI application,
in-process, on the real Redis of the test run; jobs reach an in-process ``/ws/node`` socket over
the real channel layer."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import uuid
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from schedulerproj.asgi import application
from tests.clients import AUDIO, AUDIO_B64, FrameInbox, register_frame, split_packets

RECV = 5.0  # seconds to wait for a frame that must come
QUIET = 0.4  # seconds of silence that show a frame does not come
SESSION_ID = re.compile(r"^s-[0-9a-f]{8}$")
JOB_ID = re.compile(r"^job-[0-9a-f]+$")
DEFAULT_PIPELINE = {"use_asr": True, "use_nmt": True, "use_tts": True, "use_semantic": False, "use_tone": False}
CUT_FLAGS = ("is_manual_cut", "is_timeout_triggered", "is_max_duration_triggered")




PACKETS = split_packets(AUDIO)  # 50 packets of 20 ms


def packets(start: int, stop: int) -> bytes:
    return b"".join(PACKETS[start:stop])


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Closed(AssertionError):
    def __init__(self, code: int | None) -> None:
        super().__init__(f"the server closed the socket with {code}")
        self.code = code


class Socket(FrameInbox):
    """A WebSocket client of the in-process application (frames it was not asked for are kept,
    as with tests.clients.Client)."""

    path = "/ws/session"
    recv_timeout = RECV

    def __init__(self, path: str | None = None, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.comm = WebsocketCommunicator(application, path or self.path, headers=headers or [])
        self.backlog: list[dict[str, Any]] = []

    async def connect(self) -> tuple[bool, Any]:
        return await self.comm.connect(timeout=RECV)

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.comm.send_to(text_data=frame if isinstance(frame, str) else json.dumps(frame))

    async def output(self, timeout: float) -> dict[str, Any]:
        """The next ASGI message the application sent (the communicator's own receive would
        cancel the application on a timeout)."""
        if self.comm.future.done():
            self.comm.future.result()  # raise what killed the consumer
        return await asyncio.wait_for(self.comm.output_queue.get(), timeout)

    @staticmethod
    def frame(message: dict[str, Any]) -> dict[str, Any]:
        if message["type"] == "websocket.close":
            raise Closed(message.get("code"))
        assert message["type"] == "websocket.send", message
        return json.loads(message["text"])

    async def next_frame(self, timeout: float) -> dict[str, Any]:
        return self.frame(await self.output(timeout))

    async def error(self, code: str, timeout: float = RECV) -> dict[str, Any]:
        frame = await self.expect("error", timeout)
        assert frame["code"] == code, frame
        assert isinstance(frame["message"], str) and len(frame["message"]) > 10
        return frame

    async def silent(self, seconds: float = QUIET) -> list[dict[str, Any]]:
        """Frames that arrive within ``seconds`` (and those kept), leaving none kept."""
        got, self.backlog = self.backlog, []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (remaining := deadline - loop.time()) > 0:
            try:
                got.append(self.frame(await self.output(remaining)))
            except TimeoutError:
                break
        return got

    async def closed(self, timeout: float = RECV) -> int | None:
        """Wait for the server to close the socket; its close code."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            message = await self.output(max(0.01, deadline - loop.time()))
            if message["type"] == "websocket.close":
                return message.get("code")

    async def disconnect(self) -> None:
        if self.comm._future is None or self.comm.future.done():
            return
        await self.comm.send_input({"type": "websocket.disconnect", "code": 1000})
        await self.comm.wait(timeout=RECV)


class Browser(Socket):
    session_id = ""
    trace_id = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seq = 0

    async def init(self, src: str = "zh", tgt: str = "en", **fields: Any) -> dict[str, Any]:
        """Send session_init; the ack (or the error)."""
        await self.send({"type": "session_init", "client_version": "web-client-v1.0", "platform": "web",
                         "src_lang": src, "tgt_lang": tgt, **fields})
        ack = await self.expect(lambda f: f["type"] in ("session_init_ack", "error"))
        if ack["type"] == "session_init_ack":
            self.session_id, self.trace_id = ack["session_id"], ack["trace_id"]
        return ack

    async def chunk(self, payload: bytes | str | None, final: bool = False, **fields: Any) -> None:
        if isinstance(payload, bytes):
            payload = b64(payload)
        frame = {"type": "audio_chunk", "session_id": self.session_id, "seq": self.seq, "is_final": final,
                 "payload": payload, "client_timestamp_ms": int(time.time() * 1000)}
        self.seq += 1
        await self.send(frame | fields)

    async def utterance(self, index: int, audio_b64: str = AUDIO_B64, **fields: Any) -> None:
        await self.send({"type": "utterance", "session_id": self.session_id, "utterance_index": index,
                         "manual_cut": True, "src_lang": "zh", "tgt_lang": "en", "audio": audio_b64,
                         "audio_format": "opus", "sample_rate": 16000, **fields})

    async def heartbeat(self, session_id: str | None = None) -> None:
        await self.send({"type": "client_heartbeat", "session_id": session_id or self.session_id,
                         "timestamp": int(time.time() * 1000)})

    async def alive(self) -> None:
        """The socket is open and the session answers."""
        await self.heartbeat()
        beat = await self.expect("server_heartbeat")
        assert beat["session_id"] == self.session_id


class Node(Socket):
    path = "/ws/node"
    node_id = ""

    async def register(self, **kwargs: Any) -> dict[str, Any]:
        await self.send(register_frame(**kwargs))
        ack = await self.expect("node_register_ack")
        self.node_id = ack["node_id"]
        return ack

    async def job(self, timeout: float = RECV) -> dict[str, Any]:
        return await self.expect("job_assign", timeout)

    async def jobs(self, count: int) -> list[dict[str, Any]]:
        """``count`` job_assign frames, by utterance index (concurrent cuts may cross)."""
        got = [await self.job() for _ in range(count)]
        return sorted(got, key=lambda job: job["utterance_index"])

    async def answer(self, job: dict[str, Any], **fields: Any) -> None:
        await self.send({
            "type": "job_result", "job_id": job["job_id"], "attempt_id": job["attempt_id"],
            "node_id": self.node_id, "session_id": job["session_id"],
            "utterance_index": job["utterance_index"], "success": True,
            "text_asr": f"asr {job['utterance_index']}", "text_translated": f"text {job['utterance_index']}",
            "tts_format": "opus", "extra": {"service_timings": {"asr_ms": 3, "nmt_ms": 2}},
            "processing_time_ms": 5, "trace_id": job["trace_id"], **fields,
        })


@pytest.fixture
async def connect(published, settings):
    """Open sockets on the in-process application (closed at the end of the test)."""
    settings.SCHEDULER_NODE_AUTH = "open"
    opened: list[Socket] = []

    async def open_socket(kind: type[Socket] = Browser, path: str | None = None,
                          headers: list[tuple[bytes, bytes]] | None = None) -> Any:
        sock = kind(path, headers)
        accepted, detail = await sock.connect()
        assert accepted, detail
        opened.append(sock)
        return sock

    yield open_socket
    for sock in reversed(opened):
        await sock.disconnect()


@pytest.fixture
async def node(connect):
    """A registered node serving 14 languages with 16 slots (automatic pools)."""
    sock = await connect(Node)
    ack = await sock.register(slots=16)
    assert ack["status"] == "ready"
    return sock


@pytest.fixture
async def browser(connect):
    sock = await connect(Browser)
    ack = await sock.init("zh", "en")
    assert ack["type"] == "session_init_ack", ack
    return sock


def assert_one_flag(job: dict[str, Any], flag: str) -> None:
    assert {name: job[name] for name in CUT_FLAGS} == {name: name == flag for name in CUT_FLAGS}, job


# --- session_init -------------------------------------------------------------------------


async def test_session_init_ack_has_every_field(connect):
    browser = await connect()
    trace = str(uuid.uuid4())
    ack = await browser.init("zh", "en", trace_id=trace, dialect=None, features={}, pairing_code=None,
                             mode="one_way", tenant_id=None, unknown_field=1)
    assert SESSION_ID.match(ack["session_id"])
    assert ack == {
        "type": "session_init_ack",
        "session_id": ack["session_id"],
        "assigned_node_id": None,
        "message": "session created",
        "trace_id": trace,
        "protocol_version": "1.0",
        "use_binary_frame": False,
        "negotiated_codec": "opus",
        "negotiated_audio_format": "opus",
        "negotiated_sample_rate": 16000,
        "negotiated_channel_count": 1,
    }


@pytest.mark.parametrize("fields", [{}, {"trace_id": None}])
async def test_session_init_without_trace_id_gets_a_uuid4(connect, fields):
    browser = await connect()
    ack = await browser.init("en", "zh", **fields)
    assert ack["type"] == "session_init_ack"
    assert uuid.UUID(ack["trace_id"]).version == 4


async def test_trailing_slash_path(connect):
    browser = await connect(Browser, "/ws/session/")
    assert (await browser.init())["type"] == "session_init_ack"


async def test_two_way_session_is_acked(connect):
    browser = await connect()
    ack = await browser.init("auto", "en", lang_a="zh", lang_b="en", mode="two_way_auto", auto_langs=["zh", "en"])
    assert ack["type"] == "session_init_ack"


@pytest.mark.parametrize(
    ("src", "tgt", "fields"),
    [
        ("auto", "en", {}),
        ("auto", "en", {"lang_a": "zh"}),
        ("auto", "en", {"lang_b": "en"}),
        ("auto", "en", {"lang_a": "zh", "lang_b": None}),
        ("auto", "en", {"lang_a": "", "lang_b": "en"}),
        ("auto", "en", {"lang_a": "zh", "lang_b": "zh"}),
        ("zh", "zh", {}),
    ],
)
async def test_bad_language_choice_is_invalid_message(connect, src, tgt, fields):
    browser = await connect()
    error = await browser.init(src, tgt, **fields)
    assert error["type"] == "error" and error["code"] == "INVALID_MESSAGE", error
    assert not browser.session_id
    assert (await browser.init("zh", "en"))["type"] == "session_init_ack"  # the socket stays open


@pytest.fixture
def zh_en_pool_only(published, settings):
    """Automatic pools off; one admin pool, zh → en."""
    from dispatch.config import pools_publish
    from pools.config import import_pools

    settings.SCHEDULER_AUTO_PAIR_POOLS = False
    import_pools({"pools": [{"name": "zh-en", "pairs": [["zh", "en"]], "required_services": ["asr", "nmt"]}]})
    pools_publish()


async def test_unsupported_pair_when_automatic_pools_are_off(zh_en_pool_only, connect):
    browser = await connect()
    for src, tgt, fields in [("en", "ja", {}), ("en", "zh", {}), ("auto", "en", {"lang_a": "zh", "lang_b": "en"})]:
        error = await browser.init(src, tgt, **fields)
        assert error["type"] == "error" and error["code"] == "UNSUPPORTED_LANGUAGE_PAIR", error
        assert error["message"].endswith("right now.")
    ack = await browser.init("zh", "en")  # the same socket, another session_init
    assert ack["type"] == "session_init_ack"
    await browser.alive()


@pytest.fixture
def no_pools(published, settings):
    """Automatic pools off and no admin pool."""
    from dispatch.config import pools_publish

    settings.SCHEDULER_AUTO_PAIR_POOLS = False
    pools_publish()


async def test_no_pool_at_all_when_automatic_pools_are_off(no_pools, connect):
    browser = await connect()
    error = await browser.init("zh", "en")
    assert error["code"] == "UNSUPPORTED_LANGUAGE_PAIR"
    await browser.heartbeat("s-00000000")
    await browser.error("INVALID_MESSAGE")  # no session was made, the socket is open


async def test_second_session_init_closes_the_old_session(browser):
    old = browser.session_id
    await browser.send({"type": "session_init", "client_version": "v", "platform": "web",
                        "src_lang": "en", "tgt_lang": "ja"})
    close_ack = await browser.recv()
    assert close_ack == {"type": "session_close_ack", "session_id": old}
    ack = await browser.recv()
    assert ack["type"] == "session_init_ack" and ack["session_id"] != old
    browser.session_id = ack["session_id"]
    await browser.heartbeat(old)
    error = await browser.error("INVALID_SESSION")
    assert old in error["message"]
    await browser.alive()


# --- frames of a session ------------------------------------------------------------------


async def test_frames_before_session_init_are_invalid(connect):
    browser = await connect()
    frames = [
        {"type": "audio_chunk", "session_id": "s-1a2b3c4d", "seq": 0, "is_final": False, "payload": AUDIO_B64},
        {"type": "utterance", "session_id": "s-1a2b3c4d", "utterance_index": 0, "manual_cut": True,
         "src_lang": "zh", "tgt_lang": "en", "audio": AUDIO_B64, "audio_format": "opus", "sample_rate": 16000},
        {"type": "client_heartbeat", "session_id": "s-1a2b3c4d", "timestamp": 1},
        {"type": "session_close", "session_id": "s-1a2b3c4d"},
    ]
    for frame in frames:
        await browser.send(frame)
        error = await browser.error("INVALID_MESSAGE")
        assert "session_init" in error["message"]
    assert (await browser.init())["type"] == "session_init_ack"


async def test_frames_naming_another_session_are_invalid_session(browser):
    other = "s-00000000" if browser.session_id != "s-00000000" else "s-11111111"
    for frame in [
        {"type": "audio_chunk", "session_id": other, "seq": 0, "is_final": True, "payload": AUDIO_B64},
        {"type": "utterance", "session_id": other, "utterance_index": 0, "manual_cut": True, "src_lang": "zh",
         "tgt_lang": "en", "audio": AUDIO_B64, "audio_format": "opus", "sample_rate": 16000},
        {"type": "client_heartbeat", "session_id": other, "timestamp": 1},
        {"type": "session_close", "session_id": other},
    ]:
        await browser.send(frame)
        await browser.error("INVALID_SESSION")
    await browser.alive()


async def test_malformed_frames_get_invalid_message_and_the_socket_stays_open(browser):
    for raw in ["{", "[]", "{}", '{"type": "bogus"}',
                json.dumps({"type": "audio_chunk", "session_id": browser.session_id, "seq": "1", "is_final": False}),
                json.dumps({"type": "client_heartbeat"})]:
        await browser.send(raw)
        await browser.error("INVALID_MESSAGE")
    await browser.comm.send_to(bytes_data=b"\x00\x01")
    await browser.error("INVALID_MESSAGE")
    await browser.alive()


async def test_frames_passed_unused_get_no_answer(browser):
    for frame_type in ("tts_started", "tts_play_ended", "room_kick", "webrtc_bye"):
        await browser.send({"type": frame_type, "session_id": browser.session_id})
    assert await browser.silent() == []
    await browser.alive()


async def test_client_heartbeat_gets_server_time(browser):
    before = int(time.time() * 1000)
    await browser.heartbeat()
    beat = await browser.expect("server_heartbeat")
    after = int(time.time() * 1000)
    assert set(beat) == {"type", "session_id", "timestamp"}
    assert beat["session_id"] == browser.session_id
    assert isinstance(beat["timestamp"], int) and before - 1 <= beat["timestamp"] <= after + 1


async def test_session_close_is_acked_and_the_socket_stays_open(browser):
    old = browser.session_id
    await browser.send({"type": "session_close", "session_id": old, "reason": "user"})
    assert await browser.recv() == {"type": "session_close_ack", "session_id": old}
    await browser.heartbeat(old)
    await browser.error("INVALID_MESSAGE")  # no session now
    ack = await browser.init("en", "zh")
    assert ack["type"] == "session_init_ack" and ack["session_id"] != old
    await browser.alive()


async def test_frame_over_the_size_limit_closes_1009(settings, connect):
    settings.SCHEDULER_MAX_FRAME_BYTES = 2000
    browser = await connect()
    await browser.init()
    await browser.chunk("A" * 4000)
    assert await browser.closed() == 1009


# --- origins ------------------------------------------------------------------------------


async def test_origin_check(settings, connect):
    settings.ALLOWED_ORIGINS = ["https://app.example"]
    evil = Browser(headers=[(b"origin", b"https://evil.example")])
    accepted, _ = await evil.connect()
    assert accepted is False  # refused at the handshake (daphne answers HTTP 403)
    await evil.disconnect()
    for headers in ([(b"origin", b"https://app.example")], [(b"origin", b"https://app.example/")], []):
        browser = await connect(Browser, None, headers)  # asserts the handshake is accepted
        assert (await browser.init())["type"] == "session_init_ack"
    # /ws/node checks tokens, not origins
    node = await connect(Node, None, [(b"origin", b"https://evil.example")])
    assert (await node.register())["type"] == "node_register_ack"


# --- rate limit ---------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True])
async def test_a_burst_over_the_rate_is_dropped_with_one_warning(settings, connect, binary):
    settings.SCHEDULER_RATE_LIMIT_PER_S = 5  # bucket of 10
    browser = await connect()
    await browser.init()  # one token
    started = time.monotonic()
    for _ in range(30):
        if binary:  # every frame costs a token, a binary one too
            await browser.comm.send_to(bytes_data=b"\x01")
        else:
            await browser.heartbeat()
    frames = await browser.silent(0.5)
    elapsed = time.monotonic() - started
    if binary:
        beats = [f for f in frames if f["type"] == "error" and f["code"] == "INVALID_MESSAGE"]
    else:
        beats = [f for f in frames if f["type"] == "server_heartbeat"]
    warnings = [f for f in frames if f["type"] == "error" and f["code"] == "RATE_LIMITED"]
    assert len(beats) + len(warnings) == len(frames)
    assert 1 <= len(warnings) <= 1 + int(elapsed)
    assert 9 <= len(beats) < 30  # the bucket, plus what refilled meanwhile; the rest dropped
    await asyncio.sleep(1.5)  # the bucket refills
    await browser.alive()


async def test_a_flood_is_closed_with_1008_after_5_seconds_of_drops(settings, connect):
    settings.SCHEDULER_RATE_LIMIT_PER_S = 5
    browser = await connect()
    await browser.init()
    loop = asyncio.get_running_loop()

    async def flood() -> None:
        while True:
            await browser.heartbeat()
            await asyncio.sleep(0.01)

    sender = asyncio.ensure_future(flood())
    started, warnings, beats, code = loop.time(), [], 0, None
    try:
        while code is None:
            message = await browser.output(12)
            if message["type"] == "websocket.close":
                code = message.get("code")
                continue
            frame = browser.frame(message)
            if frame["type"] == "error":
                assert frame["code"] == "RATE_LIMITED", frame
                warnings.append(loop.time())
            else:
                assert frame["type"] == "server_heartbeat", frame
                beats += 1
    finally:
        sender.cancel()
    closed_at = loop.time()
    assert code == 1008
    assert beats > 10  # the refill let frames through now and then: still one run
    # drops in each of 5 consecutive seconds: at least 4 whole seconds after the first drop's second
    assert closed_at - warnings[0] > 2.8  # (receipt jitter margin)
    assert closed_at - started < 12
    # RATE_LIMITED at most once a second
    assert 2 <= len(warnings) <= 1 + int(closed_at - warnings[0])
    gaps = [b - a for a, b in zip(warnings, warnings[1:], strict=False)]
    assert min(gaps) > 0.8, gaps  # (receipt jitter margin)


# --- cuts, end to end through a node ------------------------------------------------------


async def test_streamed_utterance_reaches_the_node(node, browser):
    await browser.chunk(AUDIO)
    await browser.chunk("", final=True)
    job = await node.job()
    assert JOB_ID.match(job["job_id"])
    assert job == {
        "type": "job_assign",
        "job_id": job["job_id"],
        "attempt_id": 1,
        "session_id": browser.session_id,
        "utterance_index": 0,
        "src_lang": "zh",
        "tgt_lang": "en",
        "dialect": None,
        "features": {},
        "pipeline": DEFAULT_PIPELINE,
        "audio": AUDIO_B64,
        "audio_format": "opus",
        "sample_rate": 16000,
        "mode": "one_way",
        "lang_a": None,
        "lang_b": None,
        "auto_langs": None,
        "enable_streaming_asr": False,
        "trace_id": browser.trace_id,
        "turn_id": job["turn_id"],
        "is_manual_cut": True,
        "is_timeout_triggered": False,
        "is_max_duration_triggered": False,
    }
    assert isinstance(job["turn_id"], str) and job["turn_id"]
    event = await browser.expect("ui_event")
    assert event["event"] == "DISPATCHED" and event["status"] == "ok"
    assert (event["job_id"], event["utterance_index"], event["session_id"], event["trace_id"]) == (
        job["job_id"], 0, browser.session_id, browser.trace_id)
    await node.answer(job)
    assert (await browser.expect("ui_event"))["event"] == "ASR_FINAL"
    assert (await browser.expect("ui_event"))["event"] == "NMT_DONE"
    result = await browser.expect("translation_result")
    assert result["job_id"] == job["job_id"] and result["utterance_index"] == 0
    assert (result["text_asr"], result["text_translated"], result["tts_audio"]) == ("asr 0", "text 0", "")
    assert result["service_timings"] == {"asr_ms": 3, "nmt_ms": 2}
    assert result["trace_id"] == browser.trace_id and result["session_id"] == browser.session_id


async def test_cuts_final_and_length(settings, node, connect):
    settings.SCHEDULER_MAX_UTTERANCE_MS = 1000  # 50 packets
    settings.SCHEDULER_PAUSE_MS = 60_000  # out of the way
    browser = await connect()
    await browser.init()
    await browser.chunk(packets(0, 30))  # 600 ms
    await browser.chunk(packets(30, 50), seq=1)  # 1000 ms: length cut (index 0)
    await browser.chunk(packets(0, 30), seq=1)  # seq repeats and gaps are ignored
    await browser.chunk(packets(0, 30), seq=9)  # 1200 ms: length cut of whole chunks (index 1)
    await browser.chunk(packets(0, 10), final=True, seq=4)  # manual cut, payload first (index 2)
    await browser.chunk("", final=True)  # empty cut: no job, no index
    await browser.chunk(AUDIO, final=True)  # a final reaching the limit: manual (index 3)
    await browser.chunk(None, final=True)  # empty again
    jobs = await node.jobs(4)
    assert [job["utterance_index"] for job in jobs] == [0, 1, 2, 3]
    assert [job["audio"] for job in jobs] == [
        AUDIO_B64, b64(packets(0, 30) * 2), b64(packets(0, 10)), AUDIO_B64]
    for job, flag in zip(jobs, ["is_max_duration_triggered", "is_max_duration_triggered", "is_manual_cut",
                                "is_manual_cut"], strict=True):
        assert_one_flag(job, flag)
    assert jobs[0]["turn_id"] == jobs[1]["turn_id"] == jobs[2]["turn_id"]  # one long turn
    assert jobs[3]["turn_id"] != jobs[2]["turn_id"]  # the final ended it
    assert [f for f in await node.silent() if f["type"] == "job_assign"] == []
    dispatched = [await browser.expect(lambda f: f["type"] == "ui_event" and f["event"] == "DISPATCHED")
                  for _ in range(4)]
    assert {(e["job_id"], e["utterance_index"]) for e in dispatched} == {
        (job["job_id"], job["utterance_index"]) for job in jobs}
    assert [f for f in await browser.silent() if f["type"] == "error"] == []


async def test_pause_cut(settings, node, connect):
    settings.SCHEDULER_MAX_UTTERANCE_MS = 1000
    settings.SCHEDULER_PAUSE_MS = 300
    browser = await connect()
    await browser.init()
    await browser.chunk(AUDIO)  # length cut (index 0)
    first = await node.job()
    assert_one_flag(first, "is_max_duration_triggered")
    sent = time.monotonic()
    await browser.chunk(packets(0, 10))
    paused = await node.job()  # the pause (index 1)
    assert time.monotonic() - sent >= 0.25  # not before the configured pause (timer margin)
    assert paused["utterance_index"] == 1 and paused["audio"] == b64(packets(0, 10))
    assert_one_flag(paused, "is_timeout_triggered")
    assert paused["turn_id"] == first["turn_id"]  # the pause ends the long turn
    await browser.chunk(packets(0, 20), final=True)
    manual = await node.job()
    assert manual["utterance_index"] == 2 and manual["turn_id"] != paused["turn_id"]
    assert_one_flag(manual, "is_manual_cut")
    await browser.chunk(packets(10, 20))
    again = await node.job()
    assert again["utterance_index"] == 3 and again["turn_id"] != manual["turn_id"]
    assert_one_flag(again, "is_timeout_triggered")
    assert [f for f in await node.silent(0.7) if f["type"] == "job_assign"] == []  # empty pauses: nothing


async def test_bad_audio_chunk_payload_is_dropped(node, browser):
    await browser.chunk(packets(0, 10))
    for payload in ["@@not base64@@", "QUJD=", b64(b"hello world"), b64(b"\x00\x00"), b64(AUDIO[:-1])]:
        await browser.chunk(payload)
        error = await browser.error("INVALID_MESSAGE")
        assert "audio_chunk" in error["message"]
    await browser.chunk(packets(10, 20), final=True)
    job = await node.job()
    assert job["audio"] == b64(packets(0, 20)) and job["utterance_index"] == 0


async def test_utterance_indexes_count_per_session(node, browser):
    await browser.chunk(AUDIO, final=True)
    assert (await node.job())["utterance_index"] == 0
    await browser.chunk(AUDIO, final=True)
    assert (await node.job())["utterance_index"] == 1
    await browser.init("en", "zh")  # a new session counts from 0 again
    await browser.chunk(AUDIO, final=True)
    job = await node.job()
    assert (job["utterance_index"], job["session_id"], job["src_lang"]) == (0, browser.session_id, "en")


async def test_two_way_job_fields(node, connect):
    browser = await connect()
    await browser.init("auto", "en", lang_a="zh", lang_b="en", auto_langs=["zh", "en"], mode="two_way_auto")
    await browser.chunk(AUDIO, final=True)
    job = await node.job()
    assert {k: job[k] for k in ("src_lang", "tgt_lang", "lang_a", "lang_b", "auto_langs", "mode")} == {
        "src_lang": "auto", "tgt_lang": "en", "lang_a": "zh", "lang_b": "en", "auto_langs": ["zh", "en"],
        "mode": "two_way_auto"}


async def test_second_session_init_cancels_the_old_sessions_jobs(node, browser):
    old_session, old_trace = browser.session_id, browser.trace_id
    await browser.chunk(AUDIO, final=True)
    job = await node.job()
    await browser.expect("ui_event")  # DISPATCHED
    await browser.init("zh", "en")
    assert browser.session_id != old_session
    cancel = await node.expect("job_cancel")
    assert cancel == {"type": "job_cancel", "job_id": job["job_id"], "reason": "session_closed",
                      "trace_id": old_trace}
    await node.answer(job)  # too late: the job ended with its session
    assert [f for f in await browser.silent() if f["type"] != "session_close_ack"] == []


# --- utterance frames ---------------------------------------------------------------------


async def test_utterance_frame(node, browser):
    pipeline = {"use_asr": True, "use_nmt": True, "use_tts": False, "use_semantic": True, "use_tone": False}
    audio = b64(b"raw pcm is not checked for framing")
    await browser.utterance(7, audio, audio_format="pcm16", sample_rate=48000, pipeline=pipeline,
                            src_lang="ja", tgt_lang="ko", mode="two_way_auto", lang_a="ja", lang_b="ko")
    job = await node.job()
    assert job["utterance_index"] == 7 and job["audio"] == audio
    assert (job["audio_format"], job["sample_rate"], job["pipeline"]) == ("pcm16", 48000, pipeline)
    # the session's languages and mode apply, not the frame's
    assert (job["src_lang"], job["tgt_lang"], job["mode"], job["lang_a"], job["lang_b"]) == (
        "zh", "en", "one_way", None, None)
    assert_one_flag(job, "is_manual_cut")
    await browser.utterance(3)  # lower than before: fine, the client counts
    plain = await node.job()
    assert plain["utterance_index"] == 3 and plain["pipeline"] == DEFAULT_PIPELINE
    assert (plain["audio"], plain["audio_format"], plain["sample_rate"]) == (AUDIO_B64, "opus", 16000)
    assert plain["turn_id"] != job["turn_id"]
    await browser.utterance(4, pipeline=None)
    assert (await node.job())["pipeline"] == DEFAULT_PIPELINE
    await browser.utterance(5, pipeline={"use_tts": False})
    assert (await node.job())["pipeline"] == DEFAULT_PIPELINE | {"use_tts": False}
    await browser.utterance(6, manual_cut=False)  # an utterance counts as a manual cut anyway
    assert_one_flag(await node.job(), "is_manual_cut")


async def test_repeated_or_bad_utterance_is_refused(node, browser):
    await browser.utterance(0)
    await node.job()
    await browser.utterance(0)
    error = await browser.error("INVALID_MESSAGE")
    assert "0" in error["message"]
    await browser.utterance(-1)
    await browser.error("INVALID_MESSAGE")
    await browser.utterance(1, "@@not base64@@")
    await browser.error("INVALID_MESSAGE")
    assert [f for f in await node.silent() if f["type"] == "job_assign"] == []
    await browser.utterance(1)  # refused frames did not use the index
    assert (await node.job())["utterance_index"] == 1


async def test_audio_chunk_then_utterance_is_refused(node, browser):
    await browser.chunk(packets(0, 10))
    await browser.utterance(0)
    error = await browser.error("INVALID_MESSAGE")
    assert "utterance" in error["message"]
    await browser.chunk("", final=True)
    job = await node.job()
    assert job["audio"] == b64(packets(0, 10))  # the utterance did not go anywhere
    assert [f for f in await node.silent() if f["type"] == "job_assign"] == []


async def test_utterance_then_audio_chunk_is_refused(node, browser):
    await browser.utterance(0)
    await node.job()
    await browser.chunk(AUDIO, final=True)
    error = await browser.error("INVALID_MESSAGE")
    assert "audio_chunk" in error["message"]
    assert [f for f in await node.silent() if f["type"] == "job_assign"] == []
    await browser.init()  # a new session may choose again
    await browser.chunk(AUDIO, final=True)
    assert (await node.job())["session_id"] == browser.session_id


async def test_no_node_for_the_pair_gives_no_available_node_per_job(settings, connect):
    settings.SCHEDULER_DISPATCH_WAIT_S = 0.5
    settings.SCHEDULER_SESSION_MAX_INFLIGHT = 1
    browser = await connect()
    assert (await browser.init("zh", "en"))["type"] == "session_init_ack"  # automatic pools: always
    sent = time.monotonic()
    await browser.chunk(AUDIO, final=True)
    await browser.chunk(AUDIO, final=True)  # waits for the first one's slot in the session
    for index in (0, 1):
        event = await browser.expect("ui_event")
        error = await browser.expect("error")
        assert (event["event"], event["status"], event["error_code"]) == ("ERROR", "error", "NO_AVAILABLE_NODE")
        assert (error["code"], error["utterance_index"], error["trace_id"]) == (
            "NO_AVAILABLE_NODE", index, browser.trace_id)
        assert JOB_ID.match(error["job_id"]) and event["job_id"] == error["job_id"]
    assert time.monotonic() - sent >= 2 * 0.5 - 0.05  # each waited the dispatch wait
    await browser.alive()


# --- the session's queue ------------------------------------------------------------------


async def test_session_queue(settings, node, connect):
    settings.SCHEDULER_SESSION_MAX_INFLIGHT = 2
    browser = await connect()
    await browser.init()
    for index in range(6):
        await browser.utterance(index)
    first = await node.jobs(2)
    assert [job["utterance_index"] for job in first] == [0, 1]
    for index in (4, 5):  # beyond the 2 that wait
        error = await browser.error("RATE_LIMITED")
        assert error["utterance_index"] == index and error["trace_id"] == browser.trace_id
    assert [f for f in await node.silent() if f["type"] == "job_assign"] == []  # 2 and 3 wait
    await browser.alive()  # the socket stays open

    await node.answer(first[0])
    result = await browser.expect("translation_result")
    assert result["utterance_index"] == 0
    second = await node.job()
    assert second["utterance_index"] == 2  # the first that waited
    assert [f for f in await node.silent() if f["type"] == "job_assign"] == []

    await node.answer(first[1])
    assert (await browser.expect("translation_result"))["utterance_index"] == 1
    third = await node.job()
    assert third["utterance_index"] == 3
    for job in (second, third):
        await node.answer(job)
    done = {(await browser.expect("translation_result"))["utterance_index"] for _ in range(2)}
    assert done == {2, 3}
    await browser.utterance(6)  # the queue is free again
    assert (await node.job())["utterance_index"] == 6
    assert [f for f in await browser.silent() if f["type"] == "error"] == []
