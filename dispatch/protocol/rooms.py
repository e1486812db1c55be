"""Room frames (docs/protocol.md, rooms): what a browser sends to create, join and leave a room,
to say whose raw voice it wants, and the WebRTC signalling relayed between members; what the
server answers. Room frames carry no ``session_id``: the sender is the socket's session."""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec

ROOM_CODE = re.compile(r"[0-9]{6}")  # whole strings only: use fullmatch
# Kept in Redis and sent to every member on each change: bounded.
DisplayName = Annotated[str, msgspec.Meta(max_length=100)]
Language = Annotated[str, msgspec.Meta(max_length=35)]  # a BCP 47 tag's practical length


class RoomErrorCode(enum.StrEnum):
    """Codes of ``room_error`` (to the requester only)."""

    ROOM_NOT_FOUND = "ROOM_NOT_FOUND"
    ALREADY_IN_ROOM = "ALREADY_IN_ROOM"
    ROOM_FULL = "ROOM_FULL"
    INVALID_ROOM_CODE = "INVALID_ROOM_CODE"


class RoomRefused(Exception):
    """A room request the rules refuse: the requester gets ``room_error``."""

    def __init__(self, code: RoomErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --- browser → server --------------------------------------------------------------------


class _RoomFrame(msgspec.Struct, tag_field="type", kw_only=True):
    pass


class RoomCreate(_RoomFrame, tag="room_create"):
    client_ts: int | float | None = None
    display_name: DisplayName | None = None
    preferred_lang: Language | None = None


class RoomJoin(_RoomFrame, tag="room_join"):
    room_code: str
    display_name: DisplayName | None = None
    preferred_lang: Language | None = None


class RoomLeave(_RoomFrame, tag="room_leave"):
    room_code: str


class RoomRawVoicePreference(_RoomFrame, tag="room_raw_voice_preference"):
    room_code: str
    target_session_id: str
    receive_raw_voice: bool


class WebrtcOffer(_RoomFrame, tag="webrtc_offer"):
    room_code: str
    to: str
    sdp: msgspec.Raw  # opaque: passed through as sent


class WebrtcAnswer(_RoomFrame, tag="webrtc_answer"):
    room_code: str
    to: str
    sdp: msgspec.Raw


class WebrtcIce(_RoomFrame, tag="webrtc_ice"):
    room_code: str
    to: str
    candidate: msgspec.Raw


Relayed = WebrtcOffer | WebrtcAnswer | WebrtcIce
RoomFrame = RoomCreate | RoomJoin | RoomLeave | RoomRawVoicePreference | WebrtcOffer | WebrtcAnswer | WebrtcIce
ROOM_FRAMES = (RoomCreate, RoomJoin, RoomLeave, RoomRawVoicePreference, WebrtcOffer, WebrtcAnswer, WebrtcIce)
ROOM_TYPES = frozenset(str(cls.__struct_config__.tag) for cls in ROOM_FRAMES)


def relayed(frame: Relayed, sender: str) -> dict[str, Any]:
    """A signalling frame as its receiver gets it: ``to`` names the sender (there is no ``from``)."""
    out: dict[str, Any] = {"type": frame.__struct_config__.tag, "room_code": frame.room_code, "to": sender}
    if isinstance(frame, WebrtcIce):
        out["candidate"] = frame.candidate
    else:
        out["sdp"] = frame.sdp
    return out


# --- server → browser --------------------------------------------------------------------


def room_create_ack(room_code: str, room_id: str) -> dict[str, Any]:
    return {"type": "room_create_ack", "room_code": room_code, "room_id": room_id}


def rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def room_member(entry: dict[str, Any]) -> dict[str, Any]:
    """One member as ``room_members`` lists it, from its stored entry."""
    member: dict[str, Any] = {"participant_id": entry["session_id"], "session_id": entry["session_id"]}
    for name in ("display_name", "preferred_lang"):
        if entry.get(name) is not None:
            member[name] = entry[name]
    member["raw_voice_preferences"] = dict(entry.get("raw_voice_preferences") or {})
    member["joined_at"] = rfc3339(int(entry["joined_ms"]))
    return member


def room_members(room_code: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole member list, in join order."""
    ordered = sorted(entries, key=lambda entry: int(entry["seq"]))
    return {"type": "room_members", "room_code": room_code, "members": [room_member(e) for e in ordered]}


def room_error(code: RoomErrorCode, message: str) -> dict[str, Any]:
    return {"type": "room_error", "code": str(code), "message": message}


def room_expired(room_code: str) -> dict[str, Any]:
    return {
        "type": "room_expired",
        "room_code": room_code,
        "message": "This room was closed after a long time without activity.",
    }


def transcript(result: dict[str, Any]) -> dict[str, Any]:
    """A room utterance's first ``translation_result`` as members of the speaker's own language get
    it: the recognised text in place of a translation, no synthesised audio."""
    return {**result, "text_translated": result.get("text_asr") or "", "tts_audio": ""}
