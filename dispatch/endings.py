"""How a job ends for its browser: the ending a story keeps, and the frames the browser gets."""

from __future__ import annotations

from typing import Any

import msgspec

from dispatch import protocol
from dispatch.protocol import ErrorCode, JobResult

ERROR_SENTENCES = {
    ErrorCode.JOB_TIMEOUT: "Translating this utterance took too long, so it was given up. Please try again.",
    ErrorCode.NO_AVAILABLE_NODE: "No translation node is free for this language pair right now; please try again.",
    ErrorCode.INTERNAL_ERROR: "The scheduler hit an internal problem with this utterance; please try again.",
}


def error_sentence(code: str, node_message: str | None = None) -> str:
    if code in ERROR_SENTENCES:
        return ERROR_SENTENCES[ErrorCode(code)]
    detail = f" ({node_message})" if node_message else ""
    return f"The translation node could not process this utterance{detail}. Please try again."


def ending_of(result: JobResult, node_id: str) -> dict[str, Any]:
    """How a node's answer ends its job, as the story keeps it (no audio)."""
    if not result.success:
        return {
            "kind": "error",
            "code": (result.error.code if result.error else None) or ErrorCode.PROCESSING_ERROR,
            "message": result.error.message if result.error else None,
            "node": node_id,
            "attempt_id": result.attempt_id,
        }
    kind = "missing" if protocol.is_empty_result(result) else "result"
    fields = msgspec.structs.asdict(result)
    fields.pop("tts_audio", None)
    return {"kind": kind, "node": node_id, "attempt_id": result.attempt_id, "result": fields}


def ending_frames(
    ending: dict[str, Any],
    *,
    job_id: str,
    session_id: str,
    utterance_index: int,
    trace_id: str,
    elapsed_ms: int,
    now: int,
    result: JobResult | None = None,
) -> list[dict[str, Any]]:
    """The frames a browser gets when its job ends. ``result`` is the node's own frame when at
    hand (it carries the synthesised audio); otherwise the story's copy is used."""
    common: dict[str, Any] = {
        "trace_id": trace_id,
        "session_id": session_id,
        "job_id": job_id,
        "utterance_index": utterance_index,
        "elapsed_ms": elapsed_ms,
    }
    if ending["kind"] == "error":
        code = ending["code"]
        return [
            protocol.ui_event(**common, event="ERROR", status="error", error_code=code),
            protocol.error_frame(
                code,
                error_sentence(code, ending.get("message")),
                trace_id=trace_id,
                utterance_index=utterance_index,
                job_id=job_id,
            ),
        ]
    if ending["kind"] == "missing":
        return [
            protocol.missing_result(
                session_id=session_id, utterance_index=utterance_index, trace_id=trace_id, created_at_ms=now
            )
        ]
    if result is None:
        result = msgspec.convert(ending["result"], JobResult)
    return [
        protocol.ui_event(**common, event="ASR_FINAL"),
        protocol.ui_event(**common, event="NMT_DONE"),
        protocol.translation_result(
            result, session_id=session_id, utterance_index=utterance_index, trace_id=trace_id, now_ms=now
        ),
    ]
