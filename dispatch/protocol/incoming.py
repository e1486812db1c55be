"""Frames a node or a browser sends, decoded straight into typed structs: unknown fields are
ignored, ``null`` is accepted for every optional field, and types are strict (a number sent as a
string is refused)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from dispatch.protocol.codes import ProtocolError
from dispatch.protocol.rooms import ROOM_TYPES, RoomFrame

# --- Shared pieces -----------------------------------------------------------------------

ServiceType = str  # asr nmt tts tone semantic phonetic punctuation (others are ignored)


class LanguageCapabilities(msgspec.Struct):
    asr_languages: list[str] | None = None
    tts_languages: list[str] | None = None
    semantic_languages: list[str] | None = None
    semantic_core_ready: bool | None = None


class CapabilityEntry(msgspec.Struct):
    type: str
    ready: bool
    reason: str | None = None
    devices: list[str] | None = None


class InstalledService(msgspec.Struct):
    service_id: str
    type: str
    device: str | None = None
    status: str | None = None
    version: str | None = None
    model_id: str | None = None


class ResourceUsage(msgspec.Struct):
    cpu_percent: float | None = None
    gpu_percent: float | None = None
    gpu_mem_percent: float | None = None
    mem_percent: float | None = None
    running_jobs: int | None = None


class Pipeline(msgspec.Struct):
    use_asr: bool | None = None
    use_nmt: bool | None = None
    use_tts: bool | None = None
    use_semantic: bool | None = None
    use_tone: bool | None = None


class ErrorInfo(msgspec.Struct):
    code: str | None = None
    message: str | None = None
    details: Any = None


class _Frame(msgspec.Struct, tag_field="type", kw_only=True):
    pass


# --- node → server -----------------------------------------------------------------------


class _NodeCapabilityFields(_Frame):
    language_capabilities: LanguageCapabilities | None = None
    capability_by_type: list[CapabilityEntry] | None = None
    installed_services: list[InstalledService] | None = None


class NodeRegister(_NodeCapabilityFields, tag="node_register"):
    node_id: str | None = None
    max_concurrent_jobs: int | None = None
    version: str | None = None
    capability_schema_version: str | None = None
    platform: str | None = None
    hardware: dict[str, Any] | None = None
    installed_models: list[Any] | None = None
    features_supported: Any = None
    advanced_features: Any = None
    accept_public_jobs: bool | None = None


class NodeHeartbeat(_NodeCapabilityFields, tag="node_heartbeat", kw_only=True):
    node_id: str
    timestamp: int | float | None = None
    resource_usage: ResourceUsage | None = None


class JobResult(_Frame, tag="job_result"):
    job_id: str
    attempt_id: int
    node_id: str
    session_id: str
    utterance_index: int
    success: bool
    trace_id: str | None
    text_asr: str | None = None
    text_translated: str | None = None
    tts_audio: str | None = None
    tts_format: str | None = None
    extra: dict[str, Any] | None = None
    processing_time_ms: int | float | None = None
    error: ErrorInfo | None = None
    asr_quality_level: Any = None
    reason_codes: Any = None
    quality_score: Any = None
    rerun_count: Any = None
    segments_meta: Any = None
    node_completed_at_ms: int | float | None = None


class NodeAsrPartial(_Frame, tag="asr_partial"):
    job_id: str
    node_id: str
    session_id: str
    utterance_index: int
    text: str
    is_final: bool
    trace_id: str | None


class JobAck(_Frame, tag="job_ack"):
    job_id: str
    attempt_id: int
    node_id: str
    session_id: str
    trace_id: str | None


class JobStarted(_Frame, tag="job_started"):
    job_id: str
    attempt_id: int
    node_id: str
    session_id: str
    trace_id: str | None


class NodeError(_Frame, tag="node_error"):
    node_id: str
    code: str
    message: str
    details: Any = None


class NodeControl(_Frame, tag="node_control"):
    command: Literal["drain", "resume"]
    reason: str | None = None


NodeFrame = (
    NodeRegister | NodeHeartbeat | JobResult | NodeAsrPartial | JobAck | JobStarted | NodeError
    | NodeControl
)
NODE_IGNORED = frozenset({"tts_started", "tts_play_ended"})

# --- what one node may declare -------------------------------------------------------------

LANGUAGE_CODE_MAX = 16  # characters
LANGUAGE_CODE = re.compile(rf"[A-Za-z0-9-]{{1,{LANGUAGE_CODE_MAX}}}")
LANGUAGE_LISTS = ("asr_languages", "tts_languages", "semantic_languages")
SERVICE_LISTS = ("capability_by_type", "installed_services")


@dataclass(frozen=True)
class NodeBounds:
    """The most one node may declare: what it declares multiplies (a node with L languages
    joins about 1.5 × L² automatic pools), so one node must not be able to cost the fleet."""

    languages: int  # entries per language list (SCHEDULER_NODE_MAX_LANGUAGES)
    services: int  # entries per service list (SCHEDULER_NODE_MAX_SERVICES)
    slots: int  # max_concurrent_jobs (SCHEDULER_NODE_MAX_SLOTS)


def check_node_bounds(frame: NodeRegister | NodeHeartbeat, bounds: NodeBounds) -> None:
    """Refuse (``INVALID_MESSAGE``, naming the field and the bound) a frame that declares more
    than a node may, or a language code that is not one; the frame then changes nothing."""
    ignored = f"The {frame.__struct_config__.tag} frame was ignored."
    langs = frame.language_capabilities
    for name in LANGUAGE_LISTS:
        codes = getattr(langs, name) if langs is not None else None
        if codes is None:
            continue
        field = f"language_capabilities.{name}"
        if len(codes) > bounds.languages:
            raise ProtocolError(
                f"A node may declare at most {bounds.languages} languages per list "
                f"(SCHEDULER_NODE_MAX_LANGUAGES); {field} lists {len(codes)}. {ignored}"
            )
        for code in codes:
            if not LANGUAGE_CODE.fullmatch(code):
                raise ProtocolError(
                    f"The entry {code[:40]!r} of {field} is not a language code (letters, digits and '-', "
                    f"at most {LANGUAGE_CODE_MAX} characters). {ignored}"
                )
            if code.lower() == "auto":
                raise ProtocolError(
                    f"The entry {code!r} of {field} is not a language a node serves: 'auto' marks a two-way "
                    f"session. {ignored}"
                )
    for name in SERVICE_LISTS:
        entries = getattr(frame, name)
        if entries is not None and len(entries) > bounds.services:
            raise ProtocolError(
                f"A node may declare at most {bounds.services} entries in {name} "
                f"(SCHEDULER_NODE_MAX_SERVICES); it lists {len(entries)}. {ignored}"
            )
    slots = getattr(frame, "max_concurrent_jobs", None)
    if slots is not None and slots > bounds.slots:
        raise ProtocolError(
            f"A node may ask for at most {bounds.slots} slots (SCHEDULER_NODE_MAX_SLOTS); "
            f"max_concurrent_jobs is {slots}. {ignored}"
        )


# --- browser → server --------------------------------------------------------------------


class SessionInit(_Frame, tag="session_init"):
    client_version: str
    platform: str
    src_lang: str
    tgt_lang: str
    dialect: str | None = None
    features: dict[str, Any] | None = None
    pairing_code: str | None = None
    tenant_id: str | None = None
    mode: Literal["one_way", "two_way_auto"] | None = None
    lang_a: str | None = None
    lang_b: str | None = None
    auto_langs: list[str] | None = None
    enable_streaming_asr: bool | None = None
    partial_update_interval_ms: int | None = None
    trace_id: str | None = None


class AudioChunk(_Frame, tag="audio_chunk"):
    session_id: str
    seq: int
    is_final: bool
    payload: str | None = None
    client_timestamp_ms: int | float | None = None


class Utterance(_Frame, tag="utterance"):
    session_id: str
    utterance_index: int
    manual_cut: bool
    src_lang: str
    tgt_lang: str
    audio: str
    audio_format: str
    sample_rate: int
    mode: str | None = None
    lang_a: str | None = None
    lang_b: str | None = None
    auto_langs: list[str] | None = None
    pipeline: Pipeline | None = None
    trace_id: str | None = None


class ClientHeartbeat(_Frame, tag="client_heartbeat"):
    session_id: str
    timestamp: int | float | None = None


class SessionClose(_Frame, tag="session_close"):
    session_id: str
    reason: str | None = None


SessionFrame = SessionInit | AudioChunk | Utterance | ClientHeartbeat | SessionClose | RoomFrame
SESSION_IGNORED = frozenset({"tts_started", "tts_play_ended"})
IGNORED_PREFIXES = ("room_", "webrtc_")  # room frames the server does not know (and any on a node socket)

_node_decoder = msgspec.json.Decoder(NodeFrame)
_session_decoder = msgspec.json.Decoder(SessionFrame)


class _TypeOnly(msgspec.Struct):
    type: Any = None


_type_decoder = msgspec.json.Decoder(_TypeOnly)


class Ignored:
    """A frame the protocol lets pass unused; ``type`` is counted, nothing is answered."""

    __slots__ = ("type",)

    def __init__(self, frame_type: str) -> None:
        self.type = frame_type


def _decode(
    raw: str | bytes, decoder: msgspec.json.Decoder[Any], ignored: frozenset[str], known: frozenset[str] = frozenset()
) -> Any:
    try:
        return decoder.decode(raw)
    except msgspec.DecodeError as error:
        try:
            frame_type = _type_decoder.decode(raw).type
        except msgspec.DecodeError:
            if isinstance(error, msgspec.ValidationError):
                raise ProtocolError("A frame must be a JSON object.") from None
            raise ProtocolError("The frame is not valid JSON.") from None
        if frame_type is None:
            raise ProtocolError("The frame has no \"type\" field.") from None
        if not isinstance(frame_type, str):
            raise ProtocolError("The frame's \"type\" must be a string.") from None
        if frame_type in ignored or (frame_type.startswith(IGNORED_PREFIXES) and frame_type not in known):
            return Ignored(frame_type)
        if f"'{frame_type}'" in str(error) and "$.type" in str(error):
            raise ProtocolError(f"Unknown message type {frame_type!r}.") from None
        raise ProtocolError(f"Malformed {frame_type} frame: {error}.") from None


def decode_node_frame(raw: str | bytes, bounds: NodeBounds | None = None) -> NodeFrame | Ignored:
    """A node's frame; with ``bounds``, one that declares more than a node may is refused too."""
    frame = _decode(raw, _node_decoder, NODE_IGNORED)
    if bounds is not None and isinstance(frame, NodeRegister | NodeHeartbeat):
        check_node_bounds(frame, bounds)
    return frame


def decode_session_frame(raw: str | bytes) -> SessionFrame | Ignored:
    return _decode(raw, _session_decoder, SESSION_IGNORED, ROOM_TYPES)
