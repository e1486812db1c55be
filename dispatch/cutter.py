"""Cutting a browser's audio stream into utterances.

Audio arrives as Opus in "Plan A" framing: repeated ``[uint16 little-endian length][packet]``,
one packet per 20 ms, so chunks concatenate and the duration is exact (count the packets).
An utterance is cut on a final chunk, after a pause, or when it reaches the length or size
limit (whole chunks: a chunk is never split). A turn ends with a final or a pause, not with a
length cut, so the pieces of one long turn share a ``turn_id``.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

PACKET_MS = 20
MAX_UTTERANCE_BYTES = 500_000


class CutReason(enum.Enum):
    MANUAL = "manual"
    PAUSE = "pause"
    MAX_DURATION = "max_duration"


def opus_packet_count(data: bytes) -> int:
    """Packets in a Plan A framed buffer; ValueError when the framing does not add up."""
    count = 0
    offset = 0
    size = len(data)
    while offset < size:
        if offset + 2 > size:
            raise ValueError("a packet length is cut short")
        length = data[offset] | (data[offset + 1] << 8)
        if length == 0:
            raise ValueError("a packet has length 0")
        offset += 2 + length
        if offset > size:
            raise ValueError("a packet runs past the end of the chunk")
        count += 1
    return count


@dataclass(frozen=True)
class CutAudio:
    audio: bytes
    reason: CutReason
    turn_id: str
    duration_ms: int = 0  # packets × 20 ms


# Unframed Opus (an ``utterance`` frame whose audio is not in Plan A framing) is counted at
# 24 kbit/s, about what the browser's encoder makes of speech (tests/fixtures/job_audio.bin:
# 3,457 bytes with framing for 1 s).
UNFRAMED_OPUS_BYTES_PER_MS = 3


def audio_duration_ms(audio: bytes, audio_format: str, sample_rate: int) -> int:
    """How much audio an ``utterance`` frame carries, for the tenants' audio quota and usage:
    Opus in Plan A framing counts its packets (20 ms each, exact); other Opus is estimated from
    its size; PCM (``pcm``, ``pcm16``, ``wav``, ``s16le``) is 16-bit mono at ``sample_rate``."""
    fmt = audio_format.lower()
    if fmt in ("pcm", "pcm16", "wav", "s16le", "linear16"):
        return len(audio) * 1000 // (2 * max(1, sample_rate))
    try:
        return opus_packet_count(audio) * PACKET_MS
    except ValueError:
        return len(audio) // UNFRAMED_OPUS_BYTES_PER_MS


class Cutter:
    def __init__(self, *, max_ms: int, max_bytes: int = MAX_UTTERANCE_BYTES) -> None:
        self.max_ms = max_ms
        self.max_bytes = max_bytes
        self._chunks: list[bytes] = []
        self._bytes = 0
        self._packets = 0
        self._turn_id: str | None = None

    @property
    def pending(self) -> bool:
        return self._bytes > 0

    def add(self, payload: bytes, *, final: bool) -> CutAudio | None:
        """Append a chunk (already validated) and cut when it ends the utterance."""
        packets = opus_packet_count(payload)
        if payload:
            self._chunks.append(payload)
            self._bytes += len(payload)
            self._packets += packets
        if final:
            return self.cut(CutReason.MANUAL)
        if self._packets * PACKET_MS >= self.max_ms or self._bytes >= self.max_bytes:
            return self.cut(CutReason.MAX_DURATION)
        return None

    def cut(self, reason: CutReason) -> CutAudio | None:
        """Take what is buffered; None for an empty cut (no job, no index)."""
        if reason is not CutReason.MAX_DURATION:
            turn_id, self._turn_id = self._turn_id, None
        else:
            turn_id = self._turn_id
        if not self._bytes:
            return None
        turn_id = turn_id or uuid.uuid4().hex
        if reason is CutReason.MAX_DURATION:
            self._turn_id = turn_id
        audio = b"".join(self._chunks)
        duration_ms = self._packets * PACKET_MS
        self._chunks, self._bytes, self._packets = [], 0, 0
        return CutAudio(audio=audio, reason=reason, turn_id=turn_id, duration_ms=duration_ms)
