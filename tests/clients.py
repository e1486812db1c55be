"""WebSocket clients that speak the protocol like the real node agent and web client."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import websockets

FIXTURES = Path(__file__).parent / "fixtures"
AUDIO = (FIXTURES / "job_audio.bin").read_bytes()  # one real utterance: 50 Opus packets, 1 s
AUDIO_B64 = base64.b64encode(AUDIO).decode()
LANGS14 = ["zh", "en", "ja", "ko", "fr", "de", "es", "it", "pt", "ru", "ar", "hi", "th", "vi"]
RECV_TIMEOUT = 10.0


def split_packets(data: bytes) -> list[bytes]:
    """The framed Opus packets of a buffer, each with its 2-byte little-endian length prefix."""
    packets, offset = [], 0
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 2], "little")
        packets.append(data[offset : offset + 2 + length])
        offset += 2 + length
    return packets


def recorded(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / name).read_text().splitlines() if line.strip()]


def register_frame(
    langs: list[str] | None = None,
    *,
    node_id: str | None = None,
    services: tuple[str, ...] = ("asr", "nmt", "tts"),
    slots: int | None = None,
    tts: list[str] | None = None,
) -> dict[str, Any]:
    langs = LANGS14 if langs is None else langs
    frame: dict[str, Any] = {
        "type": "node_register",
        "node_id": node_id,
        "version": "2.0.0",
        "capability_schema_version": "2.0",
        "platform": "linux",
        "hardware": {"cpu_cores": 2, "memory_gb": 24},
        "installed_models": [],
        "installed_services": [
            {"service_id": f"svc-{s}", "type": s, "device": "gpu", "status": "running"} for s in services
        ],
        "capability_by_type": [{"type": s, "ready": True, "devices": ["gpu"]} for s in services],
        "language_capabilities": {
            "asr_languages": langs,
            "tts_languages": langs if tts is None else tts,
            "semantic_languages": langs,
            "semantic_core_ready": True,
        },
        "accept_public_jobs": True,
    }
    if slots is not None:
        frame["max_concurrent_jobs"] = slots
    return frame


class FrameInbox:
    """Keeps the frames a test has not asked for yet, so it can wait for one kind of frame.
    Subclasses say how the next frame arrives (``next_frame``, TimeoutError when none)."""

    recv_timeout = RECV_TIMEOUT
    backlog: list[dict[str, Any]]

    async def next_frame(self, timeout: float) -> dict[str, Any]:
        raise NotImplementedError

    async def recv(self, timeout: float | None = None) -> dict[str, Any]:
        if self.backlog:
            return self.backlog.pop(0)
        return await self.next_frame(self.recv_timeout if timeout is None else timeout)

    async def expect(
        self, predicate: Callable[[dict[str, Any]], bool] | str, timeout: float | None = None
    ) -> dict[str, Any]:
        """The next frame matching ``predicate`` (or of that type); others are kept for later."""
        match = (lambda f: f.get("type") == predicate) if isinstance(predicate, str) else predicate
        for index, frame in enumerate(self.backlog):
            if match(frame):
                return self.backlog.pop(index)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.recv_timeout if timeout is None else timeout)
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no {predicate} frame in time; kept {self.backlog[-5:]}")
            try:
                frame = await self.next_frame(remaining)
            except TimeoutError:
                continue
            if match(frame):
                return frame
            self.backlog.append(frame)


class Client(FrameInbox):
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.backlog = []

    async def next_frame(self, timeout: float) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def silent(self, seconds: float) -> list[dict[str, Any]]:
        """Frames that arrive within ``seconds`` (expected: none)."""
        got = list(self.backlog)
        self.backlog.clear()
        try:
            while True:
                got.append(json.loads(await asyncio.wait_for(self.ws.recv(), seconds)))
        except TimeoutError:
            return got

    async def closed(self, timeout: float = RECV_TIMEOUT) -> int | None:
        """Wait for the server to close; the close code."""
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), timeout)
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None

    async def close(self) -> None:
        await self.ws.close()


class FakeNode(Client):
    """A GPU node: registers, then answers job_assign by the given behaviour."""

    node_id: str = ""

    @classmethod
    async def connect(cls, base: str, token: str | None, *, open_timeout: float = 10, **headers: str) -> FakeNode:
        url = f"{base}/ws/node" + (f"?token={token}" if token else "")
        return cls(
            await websockets.connect(url, additional_headers=headers or None, max_size=None, open_timeout=open_timeout)
        )

    async def register(self, frame: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        await self.send(frame or register_frame(**kwargs))
        ack = await self.expect("node_register_ack")
        self.node_id = ack["node_id"]
        return ack

    async def heartbeat(self, **fields: Any) -> None:
        frame = {
            "type": "node_heartbeat",
            "node_id": self.node_id,
            "timestamp": 0,
            "resource_usage": {"cpu_percent": 10.0, "gpu_percent": 20.0, "mem_percent": 30.0, "running_jobs": 0},
        }
        frame.update(fields)
        await self.send(frame)

    def result_for(self, job: dict[str, Any], **fields: Any) -> dict[str, Any]:
        frame = {
            "type": "job_result",
            "job_id": job["job_id"],
            "attempt_id": job["attempt_id"],
            "node_id": self.node_id,
            "session_id": job["session_id"],
            "utterance_index": job["utterance_index"],
            "success": True,
            "text_asr": f"asr {job['utterance_index']}",
            "text_translated": f"translated {job['utterance_index']} by {self.node_id}",
            "tts_audio": "",
            "tts_format": "opus",
            "extra": {"service_timings": {"asr_ms": 1, "nmt_ms": 1}},
            "processing_time_ms": 5,
            "trace_id": job["trace_id"],
        }
        frame.update(fields)
        return frame


class FakeBrowser(Client):
    session_id: str = ""
    trace_id: str = ""

    @classmethod
    async def connect(cls, base: str, **headers: str) -> FakeBrowser:
        return cls(await websockets.connect(f"{base}/ws/session", additional_headers=headers or None, max_size=None))

    async def init(self, src: str = "zh", tgt: str = "en", **fields: Any) -> dict[str, Any]:
        frame = {"type": "session_init", "client_version": "web-client-v1.0", "platform": "web",
                 "src_lang": src, "tgt_lang": tgt, **fields}
        await self.send(frame)
        ack = await self.expect(lambda f: f["type"] in ("session_init_ack", "error"))
        if ack["type"] == "session_init_ack":
            self.session_id, self.trace_id = ack["session_id"], ack["trace_id"]
        return ack

    async def say(self, audio_b64: str = AUDIO_B64, seq: int = 0) -> None:
        """One utterance as the real browser sends it: audio, then an empty final chunk."""
        await self.send({"type": "audio_chunk", "session_id": self.session_id, "seq": seq,
                         "is_final": False, "payload": audio_b64})
        await self.send({"type": "audio_chunk", "session_id": self.session_id, "seq": seq + 1,
                         "is_final": True, "payload": ""})

    async def utterance(self, index: int, audio_b64: str = AUDIO_B64, **fields: Any) -> None:
        await self.send({"type": "utterance", "session_id": self.session_id, "utterance_index": index,
                         "manual_cut": True, "src_lang": "zh", "tgt_lang": "en", "audio": audio_b64,
                         "audio_format": "opus", "sample_rate": 16000, **fields})

    async def ending(self, timeout: float = RECV_TIMEOUT) -> dict[str, Any]:
        """The next frame that ends a job."""
        return await self.expect(
            lambda f: f["type"] in ("translation_result", "missing_result")
            or (f["type"] == "error" and "utterance_index" in f),
            timeout,
        )


async def eventually(condition: Callable[[], bool], timeout: float = RECV_TIMEOUT) -> None:
    """Wait until ``condition()`` holds (frames cross processes: give them a moment)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError("condition never held")
        await asyncio.sleep(0.02)


class OneRetryNode:
    """Reconnects the way the real node agent does: once, ``RETRY_S`` after its socket closes,
    registering again with the id it was given; if that attempt fails (refused, no handshake)
    it never tries again. Its register frame is the agent's own, recorded."""

    RETRY_S = 5.0

    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token
        self.frame = copy.deepcopy(recorded("transcript_reconnect.jsonl")[0]["msg"])
        self.acks: list[dict[str, Any]] = []
        self.close_codes: list[int | None] = []
        self.gave_up: BaseException | None = None  # why the one retry failed
        self.node: FakeNode | None = None

    async def register(self) -> dict[str, Any]:
        self.node = await FakeNode.connect(self.base, self.token)
        ack = await self.node.register(dict(self.frame, node_id=self.acks[-1]["node_id"] if self.acks else None))
        self.acks.append(ack)
        return ack

    async def live(self) -> None:
        """After each close, the one retry; returns when a retry fails."""
        while self.node is not None:
            self.close_codes.append(await self.node.closed(timeout=3600))
            await asyncio.sleep(self.RETRY_S)
            try:
                await self.register()
            except (OSError, TimeoutError, websockets.WebSocketException) as error:
                self.gave_up, self.node = error, None
