"""Every frame of the wire protocol (docs/protocol.md) and every error code, in one package:
``codes`` (error and close codes), ``incoming`` (frames nodes and browsers send, decoded into
typed structs) and ``outgoing`` (frames the server sends). Import them from here."""

from dispatch.protocol.codes import CloseCode, ErrorCode, ProtocolError
from dispatch.protocol.incoming import (
    AudioChunk,
    CapabilityEntry,
    ClientHeartbeat,
    ErrorInfo,
    Ignored,
    InstalledService,
    JobAck,
    JobResult,
    JobStarted,
    LanguageCapabilities,
    NodeAsrPartial,
    NodeBounds,
    NodeControl,
    NodeError,
    NodeFrame,
    NodeHeartbeat,
    NodeRegister,
    Pipeline,
    ResourceUsage,
    SessionClose,
    SessionFrame,
    SessionInit,
    Utterance,
    check_node_bounds,
    decode_node_frame,
    decode_session_frame,
)
from dispatch.protocol.outgoing import (
    asr_partial,
    encode,
    error_frame,
    is_empty_result,
    job_cancel,
    missing_result,
    node_control,
    node_register_ack,
    server_heartbeat,
    session_close_ack,
    session_init_ack,
    translation_result,
    ui_event,
)

__all__ = [
    "AudioChunk", "CapabilityEntry", "ClientHeartbeat", "CloseCode", "ErrorCode", "ErrorInfo", "Ignored",
    "InstalledService", "JobAck", "JobResult", "JobStarted", "LanguageCapabilities", "NodeAsrPartial",
    "NodeBounds", "NodeControl", "NodeError", "NodeFrame", "NodeHeartbeat", "NodeRegister", "Pipeline", "ProtocolError",
    "ResourceUsage", "SessionClose", "SessionFrame", "SessionInit", "Utterance", "asr_partial",
    "check_node_bounds", "decode_node_frame", "decode_session_frame", "encode", "error_frame", "is_empty_result", "job_cancel",
    "missing_result", "node_control", "node_register_ack", "server_heartbeat", "session_close_ack",
    "session_init_ack", "translation_result", "ui_event",
]
