"""The protocol's error codes (``error`` frames) and close codes, and the refusal of a frame."""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    INVALID_MESSAGE = "INVALID_MESSAGE"
    INVALID_SESSION = "INVALID_SESSION"
    UNSUPPORTED_LANGUAGE_PAIR = "UNSUPPORTED_LANGUAGE_PAIR"
    NO_AVAILABLE_NODE = "NO_AVAILABLE_NODE"
    JOB_TIMEOUT = "JOB_TIMEOUT"
    NODE_ID_MISMATCH = "NODE_ID_MISMATCH"
    RATE_LIMITED = "RATE_LIMITED"
    PROCESSING_ERROR = "PROCESSING_ERROR"
    MODEL_NOT_AVAILABLE = "MODEL_NOT_AVAILABLE"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    UNAUTHORIZED = "UNAUTHORIZED"  # no, a bad, or a revoked access ticket; a disabled tenant
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"  # a tenant's max_sessions or audio_minutes_per_day


class CloseCode:
    """WebSocket close codes (plain ints: the server refuses anything else)."""

    POLICY = 1008  # rate limit
    TOO_BIG = 1009
    RECONNECT = 1012  # server restarting, store lost, or the node's lease expired
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    TAKEN_OVER = 4409
    QUOTA = 4429  # a tenant's max_sessions


class ProtocolError(Exception):
    """A frame the protocol refuses; ``message`` is a sentence for the client. With
    ``close_code`` the socket is closed with it after the ``error`` frame."""

    def __init__(
        self, message: str, code: ErrorCode = ErrorCode.INVALID_MESSAGE, close_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close_code = close_code
