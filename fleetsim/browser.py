"""A simulated browser on ``/ws/session``: it opens a session for a language pair (one-way, or
two-way with ``src_lang: "auto"``) and says utterances, either as the real web client does (audio
chunks in its Opus framing, in real time, then a final chunk) or as an API client does (one
``utterance`` frame each).

It keeps what a browser can know about its jobs: when it finished saying each utterance and
which ones have ended. The server numbers a session's cuts from 0, one per utterance said here,
so every utterance must end exactly once with a ``translation_result``, a ``missing_result`` or
an ``error`` carrying its index; a second ending, or one for an index never said, is reported as
``repeated``. Whoever counts is told through a ``BrowserObserver``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from fleetsim.frames import AUDIO_B64, audio_chunk_frame, decode, session_init_frame, utterance_frame
from fleetsim.wire import ws_connect

ENDINGS = ("translation_result", "missing_result", "error")
CHUNK_PACKETS = 12  # the real web client sends about 240 ms of audio a chunk


@dataclass(frozen=True)
class LanguagePair:
    src: str
    tgt: str
    two_way: bool = False

    @property
    def label(self) -> str:
        """``zh-en`` one-way, ``en~zh`` two-way (languages sorted), as the automatic pools are named."""
        if self.two_way:
            return "~".join(sorted((self.src, self.tgt)))
        return f"{self.src}-{self.tgt}"


def job_label(job: dict[str, Any]) -> str:
    """The pair label of a ``job_assign``."""
    if job.get("mode") == "two_way_auto" or job.get("src_lang") == "auto":
        return "~".join(sorted((str(job.get("lang_a")), str(job.get("lang_b")))))
    return f"{job.get('src_lang')}-{job.get('tgt_lang')}"


class BrowserObserver:
    """What a browser tells whoever counts; every method is a no-op here."""

    def opened(self, browser: SimBrowser, ack: dict[str, Any]) -> None:
        """Its ``session_init`` was acknowledged."""

    def said(self, browser: SimBrowser, index: int) -> None:
        """It finished saying utterance ``index``."""

    def ended(self, browser: SimBrowser, index: int, frame: dict[str, Any], waited: float) -> None:
        """Utterance ``index`` ended with ``frame``, ``waited`` seconds after it was said."""

    def repeated(self, browser: SimBrowser, frame: dict[str, Any]) -> None:
        """An ending for an utterance that had ended already, or that was never said."""

    def refused(self, browser: SimBrowser, frame: dict[str, Any]) -> None:
        """An ``error`` about no utterance (its session refused, a frame refused)."""

    def closed(self, browser: SimBrowser, code: int | None, unended: int) -> None:
        """Its socket closed (``code``: the server's, 1006 when cut) with ``unended`` utterances
        said and not ended."""


class SessionRefused(Exception):
    def __init__(self, frame: dict[str, Any]) -> None:
        self.frame = frame
        super().__init__(f"session refused: {frame.get('code')}: {frame.get('message')}")


class SimBrowser:
    """One browser on its own socket (``base``: ``ws://host:port``), one session at a time."""

    def __init__(self, base: str, pair: LanguagePair, *, observer: BrowserObserver | None = None,
                 name: str = "") -> None:
        self.url = f"{base}/ws/session"
        self.pair = pair
        self.observer = observer or BrowserObserver()
        self.name = name
        self.ws: ClientConnection | None = None
        self.session_id = ""
        self.said_at: dict[int, float] = {}  # utterances said and not ended: index → perf_counter()
        self.next_index = 0
        self.seq = 0
        self.listener: asyncio.Future[None] | None = None
        self.closing = False  # this side closes: what has not ended is unended, not lost

    @property
    def open(self) -> bool:
        return self.ws is not None and self.listener is not None and not self.listener.done()

    async def connect(self) -> dict[str, Any]:
        """Open a socket and a session on it; raises ``SessionRefused`` on an ``error`` answer."""
        ws = await ws_connect(self.url, open_timeout=30)
        await ws.send(session_init_frame(self.pair.src, self.pair.tgt, two_way=self.pair.two_way))
        try:
            ack = decode(await ws.recv())
        except websockets.ConnectionClosed as closed:
            raise SessionRefused({"code": closed.rcvd.code if closed.rcvd else None, "message": "socket closed"}) from None
        if ack.get("type") != "session_init_ack":
            await ws.close()
            raise SessionRefused(ack)
        self.ws, self.session_id = ws, ack["session_id"]
        self.said_at, self.next_index, self.seq = {}, 0, 0
        self.listener = asyncio.ensure_future(self.listen(ws))
        self.observer.opened(self, ack)
        return ack

    async def listen(self, ws: ClientConnection) -> None:
        """Read until the socket closes, telling the observer of every ending."""
        try:
            async for text in ws:
                if '"type":"ui_event"' in text:  # most frames; nothing to count
                    continue
                frame = decode(text)
                if frame.get("type") not in ENDINGS:
                    continue
                index = frame.get("utterance_index")
                if not isinstance(index, int):
                    self.observer.refused(self, frame)
                    continue
                said = self.said_at.pop(index, None)
                if said is None:
                    self.observer.repeated(self, frame)
                    continue
                self.observer.ended(self, index, frame, time.perf_counter() - said)
        except websockets.ConnectionClosed:
            pass
        if self.ws is ws:
            self.ws = None
        self.observer.closed(self, ws.close_code, len(self.said_at))

    async def utterance(self, index: int | None = None, *, audio_b64: str = AUDIO_B64) -> int:
        """Say one utterance as an ``utterance`` frame; its index."""
        assert self.ws is not None, "connect first"
        index = self.next_index if index is None else index
        self.next_index = index + 1
        frame = utterance_frame(self.session_id, index, audio_b64=audio_b64, src=self.pair.src, tgt=self.pair.tgt)
        await self._say(self.ws, frame, index)
        return index

    async def speak(self, packets: list[bytes], *, chunk_packets: int = CHUNK_PACKETS) -> int:
        """Say one utterance as the web client does: chunks of ``chunk_packets`` packets in real
        time, then an empty final chunk; its index (the server's cut number)."""
        assert self.ws is not None, "connect first"
        ws, chunk_s = self.ws, chunk_packets * 0.020
        for start in range(0, len(packets), chunk_packets):
            began = time.perf_counter()
            await ws.send(audio_chunk_frame(self.session_id, self.seq, packets[start : start + chunk_packets]))
            self.seq += 1
            await asyncio.sleep(max(0.0, chunk_s - (time.perf_counter() - began)))
        index, self.next_index = self.next_index, self.next_index + 1
        self.seq += 1
        await self._say(ws, audio_chunk_frame(self.session_id, self.seq - 1, [], final=True), index)
        return index

    async def _say(self, ws: ClientConnection, frame: str, index: int) -> None:
        """Send the frame that ends utterance ``index``: from now on it waits for its ending."""
        self.said_at[index] = time.perf_counter()  # before sending: the answer may come first
        try:
            await ws.send(frame)
        except websockets.ConnectionClosed:
            self.said_at.pop(index, None)  # never said: the session is gone
            raise
        self.observer.said(self, index)

    async def close(self) -> None:
        self.closing = True
        ws = self.ws
        if ws is not None:
            try:
                await ws.close()
            except websockets.ConnectionClosed:
                pass
        if self.listener is not None:
            await asyncio.gather(self.listener, return_exceptions=True)
