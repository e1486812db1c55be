"""Frame decoding and the outgoing frame builders (docs/protocol.md): pure, no I/O."""

from __future__ import annotations

import json

import msgspec
import pytest

from dispatch import protocol
from dispatch.protocol import (
    AudioChunk,
    ClientHeartbeat,
    ErrorCode,
    Ignored,
    JobResult,
    NodeBounds,
    NodeHeartbeat,
    NodeRegister,
    ProtocolError,
    SessionClose,
    SessionInit,
    Utterance,
    decode_node_frame,
    decode_session_frame,
)
from tests.clients import recorded, register_frame


def bounds_in_force() -> NodeBounds:
    from django.conf import settings

    return NodeBounds(languages=settings.SCHEDULER_NODE_MAX_LANGUAGES,
                      services=settings.SCHEDULER_NODE_MAX_SERVICES, slots=settings.SCHEDULER_NODE_MAX_SLOTS)

SESSION_INIT = {
    "type": "session_init",
    "client_version": "web-client-v1.0",
    "platform": "web",
    "src_lang": "zh",
    "tgt_lang": "en",
}
CHUNK = {"type": "audio_chunk", "session_id": "s-1a2b3c4d", "seq": 1, "is_final": False, "payload": ""}
RESULT = {
    "type": "job_result",
    "job_id": "job-3f2a",
    "attempt_id": 1,
    "node_id": "node-6c7010ef",
    "session_id": "s-1a2b3c4d",
    "utterance_index": 0,
    "success": True,
    "trace_id": "t-1",
}


def dumps(frame: dict) -> str:
    return json.dumps(frame)


def refused(decode, raw: str | bytes, code: ErrorCode = ErrorCode.INVALID_MESSAGE) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        decode(raw)
    error = caught.value
    assert error.code == code
    # a sentence a person reads: no traceback, no repr of our classes
    assert error.message and error.message == str(error)
    assert "Traceback" not in error.message and "msgspec" not in error.message
    assert error.message[0].isupper() and error.message.endswith(".")
    return error


# --- what the real clients sent -----------------------------------------------------------

FIXTURE_FILES = [
    "transcript_chromium.jsonl",
    "transcript_e2e.jsonl",
    "transcript_node1.jsonl",
    "transcript_reconnect.jsonl",
    "transcript_reconnect2.jsonl",
]


@pytest.mark.parametrize("name", FIXTURE_FILES)
def test_every_recorded_client_frame_decodes(name):
    frames = [line for line in recorded(name) if line["dir"] == "in"]
    assert frames
    for line in frames:
        if line["path"] == "/ws/node":
            frame = decode_node_frame(json.dumps(line["msg"]), bounds_in_force())  # within every bound
        else:
            frame = decode_session_frame(json.dumps(line["msg"]))
        assert not isinstance(frame, Ignored)
        assert type(frame).__struct_config__.tag == line["msg"]["type"]


# --- session frames -----------------------------------------------------------------------


def test_session_init_unknown_fields_ignored_and_nulls_accepted():
    frame = decode_session_frame(
        dumps(
            SESSION_INIT
            | {
                "brand_new_field": {"x": [1, 2]},
                "dialect": None,
                "features": None,
                "pairing_code": None,
                "tenant_id": None,
                "mode": None,
                "lang_a": None,
                "lang_b": None,
                "auto_langs": None,
                "enable_streaming_asr": None,
                "partial_update_interval_ms": None,
                "trace_id": None,
            }
        )
    )
    assert isinstance(frame, SessionInit)
    assert (frame.src_lang, frame.tgt_lang, frame.trace_id, frame.mode) == ("zh", "en", None, None)


def test_session_init_two_way_fields():
    frame = decode_session_frame(
        dumps(SESSION_INIT | {"src_lang": "auto", "mode": "two_way_auto", "lang_a": "zh", "lang_b": "en",
                              "auto_langs": ["zh", "en"], "trace_id": "abc"})
    )
    assert isinstance(frame, SessionInit)
    assert (frame.lang_a, frame.lang_b, frame.auto_langs, frame.trace_id) == ("zh", "en", ["zh", "en"], "abc")


def test_other_session_frames_decode():
    chunk = decode_session_frame(dumps(CHUNK | {"payload": None, "client_timestamp_ms": None, "extra": 1}))
    assert isinstance(chunk, AudioChunk) and chunk.payload is None and chunk.seq == 1
    beat = decode_session_frame(dumps({"type": "client_heartbeat", "session_id": "s-1", "timestamp": 123}))
    assert isinstance(beat, ClientHeartbeat) and beat.session_id == "s-1"
    close = decode_session_frame(dumps({"type": "session_close", "session_id": "s-1", "reason": None}))
    assert isinstance(close, SessionClose)
    utterance = decode_session_frame(
        dumps({"type": "utterance", "session_id": "s-1", "utterance_index": 3, "manual_cut": True,
               "src_lang": "zh", "tgt_lang": "en", "audio": "", "audio_format": "pcm16", "sample_rate": 48000,
               "pipeline": {"use_tts": False, "use_semantic": None, "future_flag": True}, "mode": None})
    )
    assert isinstance(utterance, Utterance)
    assert utterance.pipeline is not None and utterance.pipeline.use_tts is False
    assert utterance.pipeline.use_semantic is None


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        (CHUNK | {"seq": "1"}, "seq"),
        (CHUNK | {"seq": True}, "seq"),
        (CHUNK | {"seq": 1.5}, "seq"),
        (CHUNK | {"is_final": 1}, "is_final"),
        (CHUNK | {"is_final": "false"}, "is_final"),
        (CHUNK | {"payload": 7}, "payload"),
        (CHUNK | {"session_id": 5}, "session_id"),
        (SESSION_INIT | {"src_lang": None}, "src_lang"),
        (SESSION_INIT | {"lang_a": 1}, "lang_a"),
        (SESSION_INIT | {"mode": "three_way"}, "mode"),
        (SESSION_INIT | {"features": []}, "features"),
        ({"type": "client_heartbeat", "session_id": "s-1", "timestamp": "now"}, "timestamp"),
    ],
)
def test_wrong_types_are_refused(frame, field):
    error = refused(decode_session_frame, dumps(frame))
    assert field in error.message and frame["type"] in error.message


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        ({k: v for k, v in CHUNK.items() if k != "seq"}, "seq"),
        ({k: v for k, v in CHUNK.items() if k != "session_id"}, "session_id"),
        ({k: v for k, v in SESSION_INIT.items() if k != "tgt_lang"}, "tgt_lang"),
        ({"type": "client_heartbeat"}, "session_id"),
        ({"type": "utterance", "session_id": "s-1"}, "utterance_index"),
    ],
)
def test_missing_required_field_is_refused(frame, field):
    error = refused(decode_session_frame, dumps(frame))
    assert field in error.message


@pytest.mark.parametrize("decode", [decode_session_frame, decode_node_frame])
@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("{", "not valid JSON"),
        ("", "not valid JSON"),
        ("hello", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ("42", "JSON object"),
        ('"audio_chunk"', "JSON object"),
        ("null", "JSON object"),
        ("{}", "no \"type\""),
        ('{"session_id": "s-1"}', "no \"type\""),
        ('{"type": null}', "no \"type\""),
        ('{"type": 5}', "must be a string"),
        ('{"type": ["audio_chunk"]}', "must be a string"),
        ('{"type": "bogus"}', "Unknown message type 'bogus'"),
    ],
)
def test_unparseable_frames_are_refused(decode, raw, words):
    assert words in refused(decode, raw).message


def test_each_socket_knows_only_its_own_frames():
    assert "Unknown message type 'node_register'" in refused(decode_session_frame, dumps(register_frame())).message
    assert "Unknown message type 'session_init'" in refused(decode_node_frame, dumps(SESSION_INIT)).message
    assert "Unknown message type 'audio_chunk'" in refused(decode_node_frame, dumps(CHUNK)).message


@pytest.mark.parametrize(
    "frame_type",
    ["tts_started", "tts_play_ended", "room_kick", "room_anything", "webrtc_ice_candidate", "webrtc_bye"],
)
def test_frames_passed_unused_come_back_ignored(frame_type):
    for raw in (dumps({"type": frame_type}), dumps({"type": frame_type, "session_id": 5, "anything": [None]})):
        frame = decode_session_frame(raw)
        assert isinstance(frame, Ignored) and frame.type == frame_type


def test_node_ignores_tts_frames():
    frame = decode_node_frame(dumps({"type": "tts_started", "job_id": "job-1"}))
    assert isinstance(frame, Ignored) and frame.type == "tts_started"


# --- node frames --------------------------------------------------------------------------


def test_node_register_unknown_fields_and_nulls():
    frame = decode_node_frame(
        dumps(register_frame() | {"node_id": None, "max_concurrent_jobs": None, "hardware": None,
                                  "installed_services": None, "gpu_vendor": "x"})
    )
    assert isinstance(frame, NodeRegister) and frame.node_id is None and frame.installed_services is None


def test_node_register_strict_types():
    assert "max_concurrent_jobs" in refused(decode_node_frame, dumps(register_frame() | {"max_concurrent_jobs": "4"})).message
    frame = register_frame()
    frame["capability_by_type"][0]["ready"] = "true"
    assert "ready" in refused(decode_node_frame, dumps(frame)).message


def test_node_heartbeat_needs_node_id():
    assert "node_id" in refused(decode_node_frame, dumps({"type": "node_heartbeat", "timestamp": 1})).message
    frame = decode_node_frame(dumps({"type": "node_heartbeat", "node_id": "node-1", "resource_usage": None,
                                     "capability_by_type": None, "new": 1}))
    assert isinstance(frame, NodeHeartbeat) and frame.resource_usage is None


def test_job_result_fields():
    frame = decode_node_frame(dumps(RESULT | {"text_asr": None, "extra": None, "error": None, "unknown": 1}))
    assert isinstance(frame, JobResult) and frame.text_asr is None
    assert "utterance_index" in refused(decode_node_frame, dumps(RESULT | {"utterance_index": "0"})).message
    assert "success" in refused(decode_node_frame, dumps({k: v for k, v in RESULT.items() if k != "success"})).message


def test_node_control_command_is_checked():
    assert "command" in refused(decode_node_frame, dumps({"type": "node_control", "command": "explode"})).message


# --- what one node may declare ------------------------------------------------------------

BOUNDS = NodeBounds(languages=3, services=2, slots=8)
LANGS3 = ["zh", "en", "pt-BR"]


def bounded(frame: dict) -> ProtocolError:
    return refused(lambda raw: decode_node_frame(raw, BOUNDS), dumps(frame))


def heartbeat_with(**fields) -> dict:
    return {"type": "node_heartbeat", "node_id": "node-6c7010ef", **fields}


def test_frames_within_the_bounds_decode():
    register = register_frame(LANGS3, services=("asr", "nmt"), slots=8)
    assert isinstance(decode_node_frame(dumps(register), BOUNDS), NodeRegister)
    heartbeat = heartbeat_with(language_capabilities={"asr_languages": ["x" * 16, "a-1", "EN"]})
    assert isinstance(decode_node_frame(dumps(heartbeat), BOUNDS), NodeHeartbeat)
    # without bounds, nothing is checked (services and tools that build frames themselves)
    assert isinstance(decode_node_frame(dumps(register_frame(LANGS3 + ["ja"], slots=1000))), NodeRegister)


@pytest.mark.parametrize("field", ["asr_languages", "tts_languages", "semantic_languages"])
@pytest.mark.parametrize("kind", ["register", "heartbeat"])
def test_too_many_languages_are_refused(field, kind):
    langs = {"asr_languages": LANGS3, "tts_languages": LANGS3, "semantic_languages": LANGS3}
    langs[field] = LANGS3 + ["ja"]
    frame = (register_frame(services=("asr",)) if kind == "register" else heartbeat_with())
    frame["language_capabilities"] = langs
    message = bounded(frame).message
    assert f"language_capabilities.{field}" in message and "at most 3" in message and "lists 4" in message
    assert "SCHEDULER_NODE_MAX_LANGUAGES" in message


@pytest.mark.parametrize("code", ["zh_CN", "zh CN", "x" * 17, "", "中文", "en\n", "auto", "AUTO"])
def test_what_is_not_a_language_code_is_refused(code):
    message = bounded(heartbeat_with(language_capabilities={"asr_languages": ["en", code]})).message
    assert "language_capabilities.asr_languages" in message
    assert ("two-way" in message) if code.lower() == "auto" else ("16 characters" in message)


@pytest.mark.parametrize("field", ["capability_by_type", "installed_services"])
def test_too_many_service_entries_are_refused(field):
    entries = register_frame(services=("asr", "nmt", "tts"))[field]
    for frame in (register_frame(["zh", "en"], services=("asr",)) | {field: entries}, heartbeat_with(**{field: entries})):
        message = bounded(frame).message
        assert field in message and "at most 2" in message and "lists 3" in message
        assert "SCHEDULER_NODE_MAX_SERVICES" in message


def test_too_many_slots_are_refused():
    message = bounded(register_frame(["zh", "en"], services=("asr",), slots=9)).message
    assert "max_concurrent_jobs" in message and "at most 8" in message and "SCHEDULER_NODE_MAX_SLOTS" in message
    frame = register_frame(["zh", "en"], services=("asr",), slots=8)
    assert decode_node_frame(dumps(frame), BOUNDS).max_concurrent_jobs == 8


# --- outgoing frames ----------------------------------------------------------------------


def roundtrip(frame: dict) -> dict:
    """What the client receives: the frame as our encoder writes it."""
    return json.loads(protocol.encode(frame))


def test_error_frame_shape():
    assert roundtrip(protocol.error_frame(ErrorCode.INVALID_MESSAGE, "Bad frame.")) == {
        "type": "error",
        "code": "INVALID_MESSAGE",
        "message": "Bad frame.",
    }
    full = roundtrip(
        protocol.error_frame(
            ErrorCode.RATE_LIMITED, "Slow down.", trace_id="t", utterance_index=0, job_id="job-1",
            details={"a": 1},
        )
    )
    assert full == {"type": "error", "code": "RATE_LIMITED", "message": "Slow down.", "trace_id": "t",
                    "utterance_index": 0, "job_id": "job-1", "details": {"a": 1}}


def test_error_codes_are_the_protocol_names():
    assert {code.value for code in ErrorCode} >= {
        "INVALID_MESSAGE", "INVALID_SESSION", "UNSUPPORTED_LANGUAGE_PAIR", "NO_AVAILABLE_NODE", "JOB_TIMEOUT",
        "NODE_ID_MISMATCH", "RATE_LIMITED", "PROCESSING_ERROR", "MODEL_NOT_AVAILABLE", "INTERNAL_ERROR",
    }
    assert [getattr(protocol.CloseCode, name) for name in ("POLICY", "TOO_BIG", "RECONNECT", "UNAUTHORIZED",
                                                       "FORBIDDEN", "TAKEN_OVER")] == [1008, 1009, 1012, 4401,
                                                                                        4403, 4409]


def job_result(**fields) -> JobResult:
    frame = decode_node_frame(dumps(RESULT | fields))
    assert isinstance(frame, JobResult)
    return frame


def test_translation_result_shape():
    result = job_result(
        text_asr="你好",
        text_translated="hello",
        tts_format="opus",
        extra={"service_timings": {"asr_ms": 10, "nmt_ms": 5}, "other": True},
        quality_score=0.9,
        reason_codes=["a"],
    )
    frame = roundtrip(protocol.translation_result(result, session_id="s-1", utterance_index=4, trace_id="t",
                                                  now_ms=1234))
    assert frame == {
        "type": "translation_result",
        "session_id": "s-1",
        "utterance_index": 4,
        "job_id": "job-3f2a",
        "text_asr": "你好",
        "text_translated": "hello",
        "tts_audio": "",  # absent → ""
        "tts_format": "opus",
        "extra": {"service_timings": {"asr_ms": 10, "nmt_ms": 5}, "other": True},
        "service_timings": {"asr_ms": 10, "nmt_ms": 5},  # lifted from extra
        "trace_id": "t",
        "scheduler_sent_at_ms": 1234,
        "quality_score": 0.9,
        "reason_codes": ["a"],
    }


def test_translation_result_without_extra_or_timings():
    bare = roundtrip(protocol.translation_result(job_result(text_asr="a", tts_audio=None), session_id="s",
                                                 utterance_index=0, trace_id="t", now_ms=1))
    assert bare["tts_audio"] == "" and "extra" not in bare and "service_timings" not in bare
    assert not {"asr_quality_level", "reason_codes", "quality_score", "rerun_count", "segments_meta"} & set(bare)
    no_timings = roundtrip(protocol.translation_result(job_result(text_asr="a", extra={"x": 1}, tts_audio="QUJD"),
                                                       session_id="s", utterance_index=0, trace_id="t", now_ms=1))
    assert no_timings["extra"] == {"x": 1} and "service_timings" not in no_timings
    assert no_timings["tts_audio"] == "QUJD"


def test_missing_result_shape_and_empty_results():
    assert roundtrip(protocol.missing_result(session_id="s-1", utterance_index=2, trace_id="t",
                                             created_at_ms=99)) == {
        "type": "missing_result",
        "session_id": "s-1",
        "utterance_index": 2,
        "reason": "silence_detected",
        "created_at_ms": 99,
        "trace_id": "t",
    }
    assert protocol.is_empty_result(job_result())
    assert protocol.is_empty_result(job_result(text_asr="", text_translated=None, tts_audio=""))
    assert not protocol.is_empty_result(job_result(text_asr="a"))
    assert not protocol.is_empty_result(job_result(tts_audio="QUJD"))


def test_session_frames_shapes():
    assert roundtrip(protocol.session_init_ack("s-1", "t")) == {
        "type": "session_init_ack",
        "session_id": "s-1",
        "assigned_node_id": None,
        "message": "session created",
        "trace_id": "t",
        "protocol_version": "1.0",
        "use_binary_frame": False,
        "negotiated_codec": "opus",
        "negotiated_audio_format": "opus",
        "negotiated_sample_rate": 16000,
        "negotiated_channel_count": 1,
    }
    assert roundtrip(protocol.server_heartbeat("s-1", 5)) == {"type": "server_heartbeat", "session_id": "s-1",
                                                              "timestamp": 5}
    assert roundtrip(protocol.session_close_ack("s-1")) == {"type": "session_close_ack", "session_id": "s-1"}


def test_pipeline_struct_defaults_are_none():
    assert msgspec.structs.asdict(protocol.Pipeline()) == dict.fromkeys(
        ("use_asr", "use_nmt", "use_tts", "use_semantic", "use_tone")
    )


# --- rooms --------------------------------------------------------------------------------


def test_room_frames_decode_without_a_session_id():
    create = decode_session_frame(dumps({"type": "room_create", "client_ts": 1700000000000, "display_name": None}))
    assert create == protocol.RoomCreate(client_ts=1700000000000)
    join = decode_session_frame(dumps({"type": "room_join", "room_code": "123456", "preferred_lang": "de", "x": 1}))
    assert join == protocol.RoomJoin(room_code="123456", preferred_lang="de")
    assert decode_session_frame(dumps({"type": "room_leave", "room_code": "123456"})) == protocol.RoomLeave(
        room_code="123456"
    )
    preference = decode_session_frame(dumps({"type": "room_raw_voice_preference", "room_code": "123456",
                                             "target_session_id": "s-1", "receive_raw_voice": False}))
    assert preference == protocol.RoomRawVoicePreference(room_code="123456", target_session_id="s-1",
                                                         receive_raw_voice=False)


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "room_join"},
        {"type": "room_join", "room_code": 123456},
        {"type": "room_leave", "room_code": None},
        {"type": "room_raw_voice_preference", "room_code": "123456", "target_session_id": "s-1",
         "receive_raw_voice": "no"},
        {"type": "webrtc_offer", "room_code": "123456", "sdp": {}},
        {"type": "webrtc_ice", "room_code": "123456", "to": "s-1"},
        {"type": "room_create", "display_name": "x" * 101},  # stored and sent to every member: bounded
        {"type": "room_join", "room_code": "123456", "preferred_lang": "x" * 36},
    ],
)
def test_malformed_room_frames_are_refused_not_ignored(frame):
    assert f"Malformed {frame['type']} frame" in refused(decode_session_frame, dumps(frame)).message


def test_a_node_socket_ignores_room_frames():
    frame = decode_node_frame(dumps({"type": "room_join", "room_code": "123456"}))
    assert isinstance(frame, Ignored) and frame.type == "room_join"


def test_signalling_is_relayed_unchanged_but_for_to():
    sdp = {"type": "offer", "sdp": "v=0\r\n", "nested": [1, {"a": None}]}
    for frame in (
        {"type": "webrtc_offer", "room_code": "123456", "to": "s-2", "sdp": sdp},
        {"type": "webrtc_answer", "room_code": "123456", "to": "s-2", "sdp": "plain"},
        {"type": "webrtc_ice", "room_code": "123456", "to": "s-2", "candidate": None},
    ):
        decoded = decode_session_frame(dumps(frame))
        out = json.loads(protocol.encode(protocol.relayed(decoded, "s-1")))
        assert out == {**frame, "to": "s-1"} and "from" not in out


def test_room_members_shape_in_join_order():
    entries = [
        {"session_id": "s-2", "seq": 2, "joined_ms": 1700000001500, "display_name": None, "preferred_lang": None,
         "lang": "en", "channel": "c2", "raw_voice_preferences": {}},
        {"session_id": "s-1", "seq": 1, "joined_ms": 1700000000000, "display_name": "Ann", "preferred_lang": "zh",
         "lang": "zh", "channel": "c1", "raw_voice_preferences": {"s-2": False}},
    ]
    assert protocol.room_members("123456", entries) == {
        "type": "room_members",
        "room_code": "123456",
        "members": [
            {"participant_id": "s-1", "session_id": "s-1", "display_name": "Ann", "preferred_lang": "zh",
             "raw_voice_preferences": {"s-2": False}, "joined_at": "2023-11-14T22:13:20.000Z"},
            {"participant_id": "s-2", "session_id": "s-2", "raw_voice_preferences": {},
             "joined_at": "2023-11-14T22:13:21.500Z"},
        ],
    }
    assert protocol.room_create_ack("123456", "u") == {"type": "room_create_ack", "room_code": "123456", "room_id": "u"}
    error = protocol.room_error(protocol.RoomErrorCode.ROOM_FULL, "This room is full.")
    assert error == {"type": "room_error", "code": "ROOM_FULL", "message": "This room is full."}
    assert set(protocol.room_expired("123456")) == {"type", "room_code", "message"}


def test_a_transcript_is_the_result_with_the_recognised_text():
    result = {"type": "translation_result", "text_asr": "你好", "text_translated": "hello", "tts_audio": "AAAA",
              "job_id": "job-1", "utterance_index": 3}
    assert protocol.transcript(result) == {**result, "text_translated": "你好", "tts_audio": ""}
