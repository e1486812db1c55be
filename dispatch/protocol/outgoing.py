"""Frames the server sends, built only here so names and fields live in one place."""

from __future__ import annotations

from typing import Any

import msgspec

from dispatch.protocol.codes import ErrorCode
from dispatch.protocol.incoming import JobResult

encode = msgspec.json.Encoder().encode


def error_frame(
    code: ErrorCode,
    message: str,
    *,
    trace_id: str | None = None,
    utterance_index: int | None = None,
    job_id: str | None = None,
    details: Any = None,
) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": str(code), "message": message}
    for key, value in (
        ("details", details),
        ("trace_id", trace_id),
        ("utterance_index", utterance_index),
        ("job_id", job_id),
    ):
        if value is not None:
            frame[key] = value
    return frame


def node_register_ack(node_id: str, status: str) -> dict[str, Any]:
    return {"type": "node_register_ack", "node_id": node_id, "message": "registered", "status": status}


def session_init_ack(session_id: str, trace_id: str) -> dict[str, Any]:
    return {
        "type": "session_init_ack",
        "session_id": session_id,
        "assigned_node_id": None,
        "message": "session created",
        "trace_id": trace_id,
        "protocol_version": "1.0",
        "use_binary_frame": False,
        "negotiated_codec": "opus",
        "negotiated_audio_format": "opus",
        "negotiated_sample_rate": 16000,
        "negotiated_channel_count": 1,
    }


def server_heartbeat(session_id: str, now_ms: int) -> dict[str, Any]:
    return {"type": "server_heartbeat", "session_id": session_id, "timestamp": now_ms}


def session_close_ack(session_id: str) -> dict[str, Any]:
    return {"type": "session_close_ack", "session_id": session_id}


def ui_event(
    *,
    trace_id: str,
    session_id: str,
    job_id: str,
    utterance_index: int,
    event: str,
    elapsed_ms: int,
    status: str = "ok",
    error_code: str | None = None,
    hint: str | None = None,
) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "ui_event",
        "trace_id": trace_id,
        "session_id": session_id,
        "job_id": job_id,
        "utterance_index": utterance_index,
        "event": event,
        "elapsed_ms": elapsed_ms,
        "status": status,
    }
    if error_code is not None:
        frame["error_code"] = error_code
    if hint is not None:
        frame["hint"] = hint
    return frame


def job_cancel(job_id: str, reason: str, trace_id: str | None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "job_cancel", "job_id": job_id, "reason": reason}
    if trace_id is not None:
        frame["trace_id"] = trace_id
    return frame


def node_control(command: str, reason: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "node_control", "command": command}
    if reason is not None:
        frame["reason"] = reason
    return frame


def asr_partial(
    *, session_id: str, utterance_index: int, job_id: str, text: str, is_final: bool, trace_id: str
) -> dict[str, Any]:
    return {
        "type": "asr_partial",
        "session_id": session_id,
        "utterance_index": utterance_index,
        "job_id": job_id,
        "text": text,
        "is_final": is_final,
        "trace_id": trace_id,
    }


RESULT_PASSTHROUGH = ("asr_quality_level", "reason_codes", "quality_score", "rerun_count", "segments_meta")


def translation_result(
    result: JobResult, *, session_id: str, utterance_index: int, trace_id: str, now_ms: int
) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "translation_result",
        "session_id": session_id,
        "utterance_index": utterance_index,
        "job_id": result.job_id,
        "text_asr": result.text_asr or "",
        "text_translated": result.text_translated or "",
        "tts_audio": result.tts_audio or "",
        "tts_format": result.tts_format,
        "trace_id": trace_id,
        "scheduler_sent_at_ms": now_ms,
    }
    if result.extra is not None:
        frame["extra"] = result.extra
        timings = result.extra.get("service_timings")
        if timings is not None:
            frame["service_timings"] = timings
    for name in RESULT_PASSTHROUGH:
        value = getattr(result, name)
        if value is not None:
            frame[name] = value
    return frame


def missing_result(
    *, session_id: str, utterance_index: int, trace_id: str, created_at_ms: int
) -> dict[str, Any]:
    return {
        "type": "missing_result",
        "session_id": session_id,
        "utterance_index": utterance_index,
        "reason": "silence_detected",
        "created_at_ms": created_at_ms,
        "trace_id": trace_id,
    }


def is_empty_result(result: JobResult) -> bool:
    return not (result.text_asr or result.text_translated or result.tts_audio)
