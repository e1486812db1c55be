"""Rooms on real server processes (docs/protocol.md, rooms): members on one process and spread
over two, the joiner's compatibility ack, refusals, raw voice preferences and WebRTC relays,
no ghost member whatever way a session ends, and expiry of idle rooms by the worker."""

from __future__ import annotations

import asyncio
import base64
import re
import signal
import uuid
from datetime import datetime

import pytest

from dispatch import keys, store
from tests.clients import AUDIO, FakeBrowser, split_packets
from tests.rooms import create, ids, join, member, room_error

pytestmark = pytest.mark.e2e

SETTINGS = {"SCHEDULER_HEARTBEAT_INTERVAL_S": 1}  # session leases of 3 s


def live_rooms() -> dict[str, set[str]]:
    """Every live room in Redis and its members' session ids."""
    client = store.sync_client()
    codes = store.decoded(client.zrange(keys.rooms(), 0, -1))
    return {code: set(store.decoded(client.hkeys(keys.room_members(code)))) for code in codes}


def room_gauges() -> tuple[int, int]:
    metrics = store.decoded(store.sync_client().hgetall(keys.metrics()))
    return int(metrics.get("rooms", 0)), int(metrics.get("room_members", 0))


@pytest.mark.parametrize("spread", [False, True], ids=["one_process", "two_processes"])
async def test_create_join_leave_and_the_member_list(stack, spread):
    server = stack(servers=2 if spread else 1, **SETTINGS)
    at = (lambda index: server.ws(index % 2)) if spread else (lambda index: server.ws(0))
    alice = await member(at(0), "zh", "en")
    bob = await member(at(1), "en", "zh")
    carol = await member(at(2), "de", "en")

    ack, members = await create(alice, display_name="Alice", preferred_lang="zh")
    code = ack["room_code"]
    assert set(ack) == {"type", "room_code", "room_id"}
    assert re.fullmatch(r"[1-9][0-9]{5}", code)
    assert uuid.UUID(ack["room_id"]).version == 4
    assert members["room_code"] == code and len(members["members"]) == 1
    first = members["members"][0]
    assert first == {
        "participant_id": alice.session_id, "session_id": alice.session_id, "display_name": "Alice",
        "preferred_lang": "zh", "raw_voice_preferences": {}, "joined_at": first["joined_at"],
    }
    assert first["joined_at"].endswith("Z") and datetime.fromisoformat(first["joined_at"])

    # a joiner gets room_create_ack (the existing web client enters a room on it), then the list;
    # the others get the list
    ack, members = await join(bob, code, display_name="Bob")
    assert ack == {"type": "room_create_ack", "room_code": code, "room_id": ack["room_id"]}
    assert ids(members) == [alice.session_id, bob.session_id]
    assert "preferred_lang" not in members["members"][1]
    assert ids(await alice.expect("room_members")) == [alice.session_id, bob.session_id]
    _, members = await join(carol, code)
    assert ids(members) == [alice.session_id, bob.session_id, carol.session_id]
    for other in (alice, bob):
        assert ids(await other.expect("room_members")) == ids(members)
    assert live_rooms() == {code: {alice.session_id, bob.session_id, carol.session_id}}
    assert room_gauges() == (1, 3)

    # leaving: the others get the list, the leaver nothing
    await bob.send({"type": "room_leave", "room_code": code})
    for other in (alice, carol):
        assert ids(await other.expect("room_members")) == [alice.session_id, carol.session_id]
    assert [f for f in await bob.silent(0.5) if f["type"].startswith("room")] == []
    # session_close ends the membership too
    await carol.send({"type": "session_close", "session_id": carol.session_id})
    await carol.expect("session_close_ack")
    assert ids(await alice.expect("room_members")) == [alice.session_id]
    # the last one out deletes the room
    await alice.send({"type": "room_leave", "room_code": code})
    await asyncio.sleep(0.3)
    assert live_rooms() == {} and room_gauges() == (0, 0)
    assert await room_error(bob, {"type": "room_join", "room_code": code}) == "ROOM_NOT_FOUND"


async def test_a_new_session_on_the_socket_leaves_the_room(stack):
    server = stack(**SETTINGS)
    alice, bob = await member(server.ws()), await member(server.ws(), "en", "zh")
    ack, _ = await create(alice)
    await join(bob, ack["room_code"])
    await alice.expect("room_members")
    old = bob.session_id
    await bob.init("en", "zh")
    assert bob.session_id != old
    assert ids(await alice.expect("room_members")) == [alice.session_id]
    assert live_rooms() == {ack["room_code"]: {alice.session_id}}


async def test_refusals(stack):
    server = stack(SCHEDULER_ROOM_MAX_MEMBERS=2, **SETTINGS)
    alice, bob, carol = [await member(server.ws()) for _ in range(3)]
    bare = await FakeBrowser.connect(server.ws())
    await bare.send({"type": "room_create", "client_ts": 1})
    assert (await bare.expect("error"))["code"] == "INVALID_MESSAGE"  # session_init first
    await alice.send({"type": "room_join"})
    assert (await alice.expect("error"))["code"] == "INVALID_MESSAGE"  # room_code is required

    for bad in ("12345", "1234567", "abcdef", "", "123456\n", "１２３４５６"):
        assert await room_error(alice, {"type": "room_join", "room_code": bad}) == "INVALID_ROOM_CODE"
    assert await room_error(alice, {"type": "room_join", "room_code": "999999"}) == "ROOM_NOT_FOUND"
    ack, _ = await create(alice)
    code = ack["room_code"]
    assert await room_error(alice, {"type": "room_create", "client_ts": 1}) == "ALREADY_IN_ROOM"
    assert await room_error(alice, {"type": "room_join", "room_code": code}) == "ALREADY_IN_ROOM"
    await join(bob, code)
    await alice.expect("room_members")
    assert await room_error(carol, {"type": "room_join", "room_code": code}) == "ROOM_FULL"
    # leave or preference by a non-member, or for another room
    assert await room_error(carol, {"type": "room_leave", "room_code": code}) == "ROOM_NOT_FOUND"
    assert await room_error(carol, {"type": "room_raw_voice_preference", "room_code": code,
                                    "target_session_id": alice.session_id, "receive_raw_voice": False}) == "ROOM_NOT_FOUND"
    assert await room_error(alice, {"type": "room_leave", "room_code": "999999"}) == "ROOM_NOT_FOUND"
    assert live_rooms() == {code: {alice.session_id, bob.session_id}}


async def test_raw_voice_preferences_and_relays_across_processes(stack):
    server = stack(servers=2, **SETTINGS)
    alice, bob = await member(server.ws(0)), await member(server.ws(1), "en", "zh")
    ack, _ = await create(alice)
    code = ack["room_code"]
    await join(bob, code)
    await alice.expect("room_members")
    outsider = await member(server.ws(1))
    await create(outsider)

    sdp = {"type": "offer", "sdp": "v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\n"}
    await alice.send({"type": "webrtc_offer", "room_code": code, "to": bob.session_id, "sdp": sdp})
    # relayed unchanged, except that "to" names the sender
    assert await bob.expect("webrtc_offer") == {"type": "webrtc_offer", "room_code": code,
                                                "to": alice.session_id, "sdp": sdp}
    await bob.send({"type": "webrtc_answer", "room_code": code, "to": alice.session_id, "sdp": {"type": "answer"}})
    assert (await alice.expect("webrtc_answer"))["to"] == bob.session_id
    candidate = {"candidate": "candidate:1 1 udp 2122260223 10.0.0.2 54321 typ host", "sdpMLineIndex": 0}
    await alice.send({"type": "webrtc_ice", "room_code": code, "to": bob.session_id, "candidate": candidate})
    assert (await bob.expect("webrtc_ice"))["candidate"] == candidate

    # bob does not want alice's raw voice: stored on bob's own entry, everyone gets the list
    await bob.send({"type": "room_raw_voice_preference", "room_code": code,
                    "target_session_id": alice.session_id, "receive_raw_voice": False})
    for browser in (alice, bob):
        members = await browser.expect("room_members")
        assert [m["raw_voice_preferences"] for m in members["members"]] == [{}, {alice.session_id: False}]
    await alice.send({"type": "webrtc_offer", "room_code": code, "to": bob.session_id, "sdp": sdp})
    await bob.send({"type": "webrtc_ice", "room_code": code, "to": alice.session_id, "candidate": candidate})
    assert (await alice.expect("webrtc_ice"))["to"] == bob.session_id  # the other way still goes
    # a non-member, the wrong room, an unknown receiver: dropped, no answer
    for frame in (
        {"type": "webrtc_offer", "room_code": code, "to": alice.session_id, "sdp": sdp},
        {"type": "webrtc_offer", "room_code": code, "to": bob.session_id, "sdp": sdp},
    ):
        await outsider.send(frame)
    await alice.send({"type": "webrtc_offer", "room_code": "123456", "to": bob.session_id, "sdp": sdp})
    await alice.send({"type": "webrtc_offer", "room_code": code, "to": "s-00000000", "sdp": sdp})
    assert [f["type"] for f in await bob.silent(0.7)] == []
    assert [f["type"] for f in await alice.silent(0.1)] == []
    assert [f["type"] for f in await outsider.silent(0.1)] == []

    await bob.send({"type": "room_raw_voice_preference", "room_code": code,
                    "target_session_id": alice.session_id, "receive_raw_voice": True})
    await bob.expect("room_members")
    await alice.send({"type": "webrtc_offer", "room_code": code, "to": bob.session_id, "sdp": sdp})
    assert (await bob.expect("webrtc_offer"))["to"] == alice.session_id


async def test_relays_count_against_the_rate_limit(stack):
    server = stack(SCHEDULER_RATE_LIMIT_PER_S=5, **SETTINGS)
    alice, bob = await member(server.ws()), await member(server.ws(), "en", "zh")
    ack, _ = await create(alice)
    await join(bob, ack["room_code"])
    for _ in range(30):
        await alice.send({"type": "webrtc_ice", "room_code": ack["room_code"], "to": bob.session_id,
                          "candidate": {"candidate": "x"}})
    assert (await alice.expect("error"))["code"] == "RATE_LIMITED"
    relayed = [f for f in await bob.silent(1.0) if f["type"] == "webrtc_ice"]
    assert 5 <= len(relayed) < 30


# --- No ghost members ---------------------------------------------------------------------


@pytest.mark.parametrize("how", ["closed_socket", "sigkill", "sigterm"])
async def test_a_member_gone_with_its_socket_or_process_leaves_no_ghost(stack, how):
    """The others are told at once when a socket closes or its process stops (SIGTERM ends its
    sessions), and within a session lease (3 heartbeat intervals) plus a worker pass when the
    process is killed (the worker closes its sessions)."""
    server = stack(servers=2, **SETTINGS)
    alice = await member(server.ws(0))
    bob = await member(server.ws(1), "en", "zh")
    ack, _ = await create(alice)
    code = ack["room_code"]
    await join(bob, code)
    await alice.expect("room_members")
    if how == "closed_socket":
        await bob.close()
    else:
        await asyncio.to_thread(server.stop_server, 1, signal.SIGKILL if how == "sigkill" else signal.SIGTERM)
    members = await alice.expect("room_members", timeout=10)
    assert ids(members) == [alice.session_id]
    assert live_rooms() == {code: {alice.session_id}}
    assert room_gauges() == (1, 1)
    assert store.decoded(store.sync_client().hget(keys.session(alice.session_id), "room")) == code


# --- Expiry ---------------------------------------------------------------------------------

PACKETS = split_packets(AUDIO)


async def test_an_idle_room_expires_and_one_with_audio_does_not(stack):
    server = stack(SCHEDULER_ROOM_IDLE_S=2, **SETTINGS)
    alice, bob = await member(server.ws()), await member(server.ws(), "en", "zh")
    talker, listener = await member(server.ws()), await member(server.ws(), "en", "zh")
    idle, _ = await create(alice)
    await join(bob, idle["room_code"])
    busy, _ = await create(talker)
    await join(listener, busy["room_code"])

    # the talker's audio keeps its room open: a packet every 0.2 s, never cut (no final, no pause)
    for seq in range(20):
        await talker.send({"type": "audio_chunk", "session_id": talker.session_id, "seq": seq,
                           "is_final": False, "payload": base64.b64encode(PACKETS[seq]).decode()})
        await asyncio.sleep(0.2)
    for browser in (alice, bob):
        expired = await browser.expect("room_expired", timeout=1)
        assert expired == {"type": "room_expired", "room_code": idle["room_code"], "message": expired["message"]}
    assert live_rooms() == {busy["room_code"]: {talker.session_id, listener.session_id}}
    assert room_gauges() == (1, 2)
    # gone for good: joining it is refused, and its members may start another
    assert await room_error(bob, {"type": "room_join", "room_code": idle["room_code"]}) == "ROOM_NOT_FOUND"
    ack, _ = await create(alice)
    # once the audio stops, the other room expires too
    for browser in (talker, listener):
        assert (await browser.expect("room_expired", timeout=5))["room_code"] == busy["room_code"]
    await alice.expect("room_expired", timeout=5)
    assert live_rooms() == {} and room_gauges() == (0, 0)
