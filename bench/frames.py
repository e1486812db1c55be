"""What the fake browsers and nodes send, shaped as real ones send it: the utterance (1 s of
audio, 50 Opus packets), a node's registration with 14 languages, its heartbeat, and its answer."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import msgspec

AUDIO = (Path(__file__).parent / "job_audio.bin").read_bytes()  # 50 Opus packets, 1 s
AUDIO_B64 = base64.b64encode(AUDIO).decode()
LANGS14 = ["zh", "en", "ja", "ko", "fr", "de", "es", "it", "pt", "ru", "ar", "hi", "th", "vi"]
SERVICES = [
    {"service_id": "faster-whisper-vad", "type": "asr", "device": "gpu", "status": "running", "version": "1.0"},
    {"service_id": "nmt-m2m100", "type": "nmt", "device": "gpu", "status": "running", "version": "1.0"},
    {"service_id": "piper-tts", "type": "tts", "device": "gpu", "status": "running", "version": "1.0"},
]
CAPABILITY_BY_TYPE = [{"type": t, "ready": True, "devices": ["gpu"]} for t in ("asr", "nmt", "tts")]
LANGUAGE_CAPABILITIES = {
    "asr_languages": LANGS14, "tts_languages": LANGS14, "semantic_languages": LANGS14, "semantic_core_ready": True,
}

encode = msgspec.json.encode
decode = msgspec.json.decode


def utterance_frame(session_id: str, index: int) -> str:
    return encode(
        {"type": "utterance", "session_id": session_id, "utterance_index": index, "manual_cut": True,
         "src_lang": "zh", "tgt_lang": "en", "audio": AUDIO_B64, "audio_format": "opus", "sample_rate": 16000}
    ).decode()


def result_frame(job: dict[str, Any], node_id: str) -> str:
    """What a node sends back, as a real node does (no synthesised audio)."""
    index = job["utterance_index"]
    return encode(
        {"type": "job_result", "job_id": job.get("job_id", f"job-{index:x}"), "attempt_id": job.get("attempt_id", 1),
         "node_id": node_id, "session_id": job["session_id"], "utterance_index": index, "success": True,
         "text_asr": f"asr text of utterance {index}", "text_translated": f"translated text of utterance {index}",
         "tts_audio": "", "tts_format": "opus", "extra": {"service_timings": {"asr_ms": 1, "nmt_ms": 1}},
         "processing_time_ms": 5, "trace_id": job.get("trace_id", "")}
    ).decode()


def register_frame() -> dict[str, Any]:
    return {
        "type": "node_register", "node_id": None, "version": "2.0.0", "capability_schema_version": "2.0",
        "platform": "linux", "hardware": {"cpu_cores": 2, "memory_gb": 24}, "installed_models": [],
        "installed_services": SERVICES, "capability_by_type": CAPABILITY_BY_TYPE, "features_supported": {},
        "accept_public_jobs": True, "language_capabilities": LANGUAGE_CAPABILITIES,
    }


def heartbeat_frame(node_id: str) -> str:
    """A real node's heartbeat: load plus its capability fields (they compare equal: no change)."""
    return encode(
        {"type": "node_heartbeat", "node_id": node_id, "timestamp": int(time.time() * 1000),
         "resource_usage": {"cpu_percent": 29.7, "gpu_percent": 0, "mem_percent": 8.9, "running_jobs": 0},
         "installed_services": SERVICES, "capability_by_type": CAPABILITY_BY_TYPE,
         "language_capabilities": LANGUAGE_CAPABILITIES}
    ).decode()
