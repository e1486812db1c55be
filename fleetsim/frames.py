"""What simulated nodes and browsers send, shaped as the real ones send it (the recorded frames in
``tests/fixtures/*.jsonl``): a node's registration, heartbeat and answers, a browser's
``session_init``, its audio in the browser's Opus framing, and ``utterance`` frames.

The audio is one real utterance (``job_audio.bin``: 1 s, 50 Opus packets in "Plan A" framing,
``[uint16 little-endian length][packet]``, 20 ms each); longer or shorter audio repeats or cuts
its packets, so a packet count is exact.
"""

from __future__ import annotations

import base64
import time
import uuid
from pathlib import Path
from typing import Any

import msgspec

AUDIO = (Path(__file__).parent / "job_audio.bin").read_bytes()  # 50 Opus packets, 1 s
AUDIO_B64 = base64.b64encode(AUDIO).decode()
PACKET_MS = 20
LANGS14 = ["zh", "en", "ja", "ko", "fr", "de", "es", "it", "pt", "ru", "ar", "hi", "th", "vi"]
SERVICE_IDS = {"asr": "faster-whisper-vad", "nmt": "nmt-m2m100", "tts": "piper-tts"}

encode = msgspec.json.encode
decode = msgspec.json.decode


def split_packets(data: bytes) -> list[bytes]:
    """The framed packets of a Plan A buffer, each with its 2-byte length prefix."""
    packets, offset = [], 0
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 2], "little")
        packets.append(data[offset : offset + 2 + length])
        offset += 2 + length
    return packets


PACKETS = split_packets(AUDIO)


def audio_of(ms: int) -> list[bytes]:
    """``ms`` of audio (at least one packet) as framed packets: the real utterance's, repeated."""
    count = max(1, ms // PACKET_MS)
    return [PACKETS[i % len(PACKETS)] for i in range(count)]


# --- A node ----------------------------------------------------------------------------------


def _services(languages: list[str]) -> dict[str, Any]:
    return {
        "installed_services": [
            {"service_id": service_id, "type": kind, "device": "gpu", "status": "running", "version": "1.0"}
            for kind, service_id in SERVICE_IDS.items()
        ],
        "capability_by_type": [{"type": kind, "ready": True, "devices": ["gpu"]} for kind in SERVICE_IDS],
        "language_capabilities": {
            "asr_languages": languages, "tts_languages": languages, "semantic_languages": languages,
            "semantic_core_ready": True,
        },
    }


CAPABILITIES14 = _services(LANGS14)


def register_frame(
    languages: list[str] | None = None, *, node_id: str | None = None, slots: int | None = None
) -> dict[str, Any]:
    """A real node's ``node_register`` (``node_id`` None on its first connect, its id after);
    ``slots`` adds ``max_concurrent_jobs``."""
    frame: dict[str, Any] = {
        "type": "node_register", "node_id": node_id, "version": "2.0.0", "capability_schema_version": "2.0",
        "platform": "linux", "hardware": {"cpu_cores": 2, "memory_gb": 24}, "installed_models": [],
        **(CAPABILITIES14 if languages is None else _services(languages)),
        "features_supported": {}, "accept_public_jobs": True,
    }
    if slots is not None:
        frame["max_concurrent_jobs"] = slots
    return frame


def heartbeat_frame(
    node_id: str, languages: list[str] | None = None, *, running_jobs: int = 0, load: float = 0.0
) -> str:
    """A real node's heartbeat: its load (``load`` 0..1 of its slots in use) plus its capability
    fields, the same as it registered with (no change, so no re-pooling)."""
    return encode(
        {"type": "node_heartbeat", "node_id": node_id, "timestamp": int(time.time() * 1000),
         "resource_usage": {"cpu_percent": round(29.7 + 50 * load, 1), "gpu_percent": round(90 * load),
                            "mem_percent": 8.9, "running_jobs": running_jobs},
         **(CAPABILITIES14 if languages is None else _services(languages))}
    ).decode()


def result_frame(job: dict[str, Any], node_id: str, *, processing_ms: int = 5) -> str:
    """What a node sends back when it has done a job, as a real node does (no synthesised audio)."""
    index = job["utterance_index"]
    return encode(
        {"type": "job_result", "job_id": job.get("job_id", f"job-{index:x}"), "attempt_id": job.get("attempt_id", 1),
         "node_id": node_id, "session_id": job["session_id"], "utterance_index": index, "success": True,
         "text_asr": f"asr text of utterance {index}", "text_translated": f"translated text of utterance {index}",
         "tts_audio": "", "tts_format": "opus", "extra": {"service_timings": {"asr_ms": 1, "nmt_ms": 1}},
         "processing_time_ms": processing_ms, "trace_id": job.get("trace_id", "")}
    ).decode()


def failure_frame(job: dict[str, Any], node_id: str, *, code: str = "PROCESSING_ERROR") -> str:
    """A node's answer for a job it could not do."""
    return encode(
        {"type": "job_result", "job_id": job["job_id"], "attempt_id": job["attempt_id"], "node_id": node_id,
         "session_id": job["session_id"], "utterance_index": job["utterance_index"], "success": False,
         "error": {"code": code, "message": "simulated failure"}, "trace_id": job.get("trace_id", "")}
    ).decode()


# --- A browser -------------------------------------------------------------------------------


def session_init_frame(src: str, tgt: str, *, two_way: bool = False) -> str:
    """The real web client's ``session_init``; a two-way session is ``src_lang: "auto"`` between
    ``lang_a`` and ``lang_b``."""
    frame: dict[str, Any] = {
        "type": "session_init", "client_version": "web-client-v1.0", "platform": "web", "src_lang": src,
        "tgt_lang": tgt, "dialect": None, "features": {}, "pairing_code": None, "mode": "one_way",
        "trace_id": str(uuid.uuid4()), "tenant_id": None,
    }
    if two_way:
        frame.update(src_lang="auto", mode="two_way_auto", lang_a=src, lang_b=tgt)
    return encode(frame).decode()


def audio_chunk_frame(session_id: str, seq: int, packets: list[bytes], *, final: bool = False) -> str:
    return encode(
        {"type": "audio_chunk", "session_id": session_id, "seq": seq, "is_final": final,
         "payload": base64.b64encode(b"".join(packets)).decode()}
    ).decode()


def utterance_frame(
    session_id: str, index: int, *, audio_b64: str = AUDIO_B64, src: str = "zh", tgt: str = "en"
) -> str:
    """A pre-cut utterance (API clients); the session's own languages apply."""
    return encode(
        {"type": "utterance", "session_id": session_id, "utterance_index": index, "manual_cut": True,
         "src_lang": src, "tgt_lang": tgt, "audio": audio_b64, "audio_format": "opus", "sample_rate": 16000}
    ).decode()
