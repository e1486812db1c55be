"""The node socket through the whole ASGI application (router, token middleware, consumer),
in this process, with the real channel layer and live state on the real Redis."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from dispatch import keys, store
from dispatch.config import pools_publish
from dispatch.selectors import node_record, pool_members
from nodes.models import NodeToken
from nodes.tokens import token_create, token_revoke
from pools.config import import_pools
from pools.models import NodeSlotOverride
from schedulerproj.asgi import application
from tests.clients import LANGS14, register_frame

TIMEOUT = 5.0
MADE_ID = re.compile(r"^node-[0-9a-f]{8}$")
WINDOW_S = 0.3  # a short heartbeat interval: the window of a node's re-pools


class NodeSocket:
    """One node's socket, driven through the ASGI application like daphne would."""

    def __init__(self, token: str | None = None, *, headers: list[tuple[bytes, bytes]] | None = None,
                 path: str = "/ws/node") -> None:
        self.comm = WebsocketCommunicator(application, path + (f"?token={token}" if token else ""), headers)
        self.node_id = ""
        self.gone = False

    async def connect(self) -> NodeSocket:
        accepted, _ = await self.comm.connect(timeout=TIMEOUT)
        assert accepted, "the handshake is always accepted (a bad token is closed after it)"
        return self

    async def send(self, frame: dict[str, Any] | str) -> None:
        text = frame if isinstance(frame, str) else json.dumps(frame)
        await self.comm.send_input({"type": "websocket.receive", "text": text})

    async def output(self) -> dict[str, Any]:
        return await self.comm.receive_output(TIMEOUT)

    async def recv(self) -> dict[str, Any]:
        out = await self.output()
        assert out["type"] == "websocket.send", f"expected a frame, got {out}"
        return json.loads(out["text"])

    async def closed(self) -> int:
        out = await self.output()
        assert out["type"] == "websocket.close", f"expected a close, got {out}"
        return int(out.get("code", 1000))

    async def quiet(self, seconds: float = 0.3) -> bool:
        return await self.comm.receive_nothing(seconds)

    async def register(self, frame: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        await self.send(frame or register_frame(**kwargs))
        ack = await self.recv()
        assert ack["type"] == "node_register_ack", ack
        self.node_id = ack["node_id"]
        return ack

    async def heartbeat(self, node_id: str | None = None, **fields: Any) -> None:
        await self.send({"type": "node_heartbeat", "node_id": node_id or self.node_id, "timestamp": 0,
                         "resource_usage": {"cpu_percent": 1.0, "mem_percent": 2.0, "running_jobs": 0},
                         **fields})

    async def rejected(self, frame: dict[str, Any] | str) -> dict[str, Any]:
        await self.send(frame)
        error = await self.recv()
        assert error["type"] == "error", error
        return error

    async def settled(self) -> None:
        """Frames are handled in order: once a refused frame is answered, all before it are done."""
        error = await self.rejected({"type": "x-barrier"})
        assert error["code"] == "INVALID_MESSAGE"

    async def disconnect(self) -> None:
        if not self.gone:
            self.gone = True
            await self.comm.disconnect(timeout=TIMEOUT)


@pytest.fixture
def other_token(transactional_db: None) -> str:
    return token_create(name=f"other-{uuid.uuid4().hex[:6]}")[1]


@pytest.fixture
def revoked_token(transactional_db: None, published: str) -> str:
    token, plaintext = token_create(name=f"revoked-{uuid.uuid4().hex[:6]}")
    token_revoke(token=token)
    return plaintext


@pytest.fixture
async def nodes(published: str, transactional_db: None) -> AsyncIterator[Callable[..., NodeSocket]]:
    """``nodes(token)`` makes a node socket; every one is disconnected at the end."""
    made: list[NodeSocket] = []

    def make(token: str | None = None, **kwargs: Any) -> NodeSocket:
        made.append(NodeSocket(token, **kwargs))
        return made[-1]

    yield make
    for node in made:
        try:
            await node.disconnect()
        except Exception:  # an application already stopped by a failed test
            pass


@pytest.fixture
def auto_off(settings: Any, published: str) -> None:
    settings.SCHEDULER_AUTO_PAIR_POOLS = False
    pools_publish()


def token_id(plaintext: str) -> str:
    from nodes.tokens import token_hash

    return str(NodeToken.objects.get(token_hash=token_hash(plaintext)).pk)


def pools_holding(prefix: str, node_id: str) -> list[str]:
    client = store.sync_client()
    return sorted(
        store.decoded(key).removeprefix(f"{prefix}:pool:")
        for key in client.scan_iter(match=f"{prefix}:pool:*", count=1000)
        if client.sismember(key, node_id)
    )


# --- Authentication -------------------------------------------------------------------------


async def test_missing_token_is_closed_4401_before_any_frame(nodes):
    node = await nodes(None).connect()
    assert await node.closed() == 4401


async def test_unknown_token_is_closed_4401(nodes):
    node = await nodes("nt_not-a-real-token").connect()
    await node.send(register_frame())
    assert await node.closed() == 4401
    assert await node.quiet(), "a node closed for its token gets no ack"


async def test_revoked_token_is_closed_4401(nodes, revoked_token):
    node = await nodes(revoked_token).connect()
    await node.send(register_frame())
    assert await node.closed() == 4401
    assert await node.quiet()


async def test_authorization_bearer_header_authenticates(nodes, node_token):
    node = await nodes(headers=[(b"authorization", f"Bearer {node_token}".encode())]).connect()
    ack = await node.register()
    assert ack["status"] == "ready"
    record = node_record(ack["node_id"])
    assert record["token"] == await sync_to_async(token_id)(node_token)


async def test_wrong_bearer_header_is_closed_4401(nodes):
    node = await nodes(headers=[(b"authorization", b"Bearer nt_wrong")]).connect()
    assert await node.closed() == 4401


async def test_trailing_slash_path(nodes, node_token):
    node = await nodes(node_token, path="/ws/node/").connect()
    assert (await node.register())["message"] == "registered"


async def test_open_auth_registers_without_token(nodes, settings):
    settings.SCHEDULER_NODE_AUTH = "open"
    node = await nodes(None).connect()
    ack = await node.register()
    assert ack["message"] == "registered" and MADE_ID.match(ack["node_id"])


# --- Registration -----------------------------------------------------------------------------


async def test_register_ack(nodes, node_token):
    node = await nodes(node_token).connect()
    ack = await node.register()
    assert set(ack) == {"type", "node_id", "message", "status"}
    assert ack["message"] == "registered" and ack["status"] == "ready"
    assert MADE_ID.match(ack["node_id"])
    record = node_record(ack["node_id"])
    assert record["status"] == "ready"
    assert json.loads(record["info"])["platform"] == "linux"


@pytest.mark.parametrize("given", ["node-0badc0de", "node-ABCDEF12"])
async def test_well_formed_id_unknown_to_us_is_kept(nodes, node_token, given):
    node = await nodes(node_token).connect()
    ack = await node.register(node_id=given)
    assert ack["node_id"] == given
    assert node_record(given)["status"] == "ready"


@pytest.mark.parametrize("given", [None, "", "garbage", "node-123", "node-1234567g", "node-123456789", "s-1a2b3c4d"])
async def test_missing_or_malformed_id_gets_a_new_one(nodes, node_token, given):
    node = await nodes(node_token).connect()
    ack = await node.register(node_id=given)
    assert MADE_ID.match(ack["node_id"]) and ack["node_id"] != given


async def test_null_optional_fields_and_unknown_fields_are_accepted(nodes, node_token):
    node = await nodes(node_token).connect()
    frame = {"type": "node_register", "node_id": None, "version": None, "platform": None, "hardware": None,
             "installed_models": None, "installed_services": None, "capability_by_type": None,
             "language_capabilities": None, "max_concurrent_jobs": None, "accept_public_jobs": None,
             "some_future_field": {"x": 1}}
    ack = await node.register(frame)
    assert ack["status"] == "registering", "no capabilities: in no pool"
    await node.heartbeat(resource_usage=None, installed_services=None, future_field=[1])
    await node.settled()


async def test_frame_before_register_is_invalid_and_socket_stays_open(nodes, node_token):
    node = await nodes(node_token).connect()
    await node.heartbeat(node_id="node-0badc0de")
    error = await node.recv()
    assert error["type"] == "error" and error["code"] == "INVALID_MESSAGE"
    assert "node_register" in error["message"]
    assert (await node.register())["message"] == "registered"


async def test_heartbeat_naming_another_node_is_refused_and_ignored(nodes, node_token):
    node = await nodes(node_token).connect()
    await node.register()
    await node.heartbeat(resource_usage={"cpu_percent": 50.0, "running_jobs": 1})
    await node.settled()
    before = node_record(node.node_id)
    await node.heartbeat(node_id="node-0badc0de", resource_usage={"cpu_percent": 99.0, "running_jobs": 3},
                         language_capabilities={"asr_languages": [], "tts_languages": [], "semantic_languages": []})
    error = await node.recv()
    assert error["type"] == "error" and error["code"] == "NODE_ID_MISMATCH" and error["message"]
    after = node_record(node.node_id)
    assert after["load"] == before["load"] and after["language_capabilities"] == before["language_capabilities"]
    assert after["pools"] == before["pools"] and after["status"] == "ready"
    assert not await store.async_client().exists(keys.node("node-0badc0de"))


MALFORMED = [
    pytest.param("this is not json {", id="not-json"),
    pytest.param("[1, 2, 3]", id="array"),
    pytest.param('"node_register"', id="string"),
    pytest.param("42", id="number"),
    pytest.param("{}", id="no-type"),
    pytest.param('{"type": null}', id="null-type"),
    pytest.param('{"type": 7}', id="number-type"),
    pytest.param('{"type": "node_reboot"}', id="unknown-type"),
    pytest.param(json.dumps(register_frame() | {"max_concurrent_jobs": "4"}), id="slots-as-string"),
    pytest.param(json.dumps(register_frame() | {"node_id": 12345678}), id="id-as-number"),
    pytest.param(json.dumps(register_frame() | {"language_capabilities": {"asr_languages": "zh"}}),
                 id="languages-not-a-list"),
    pytest.param(json.dumps({"type": "node_heartbeat", "timestamp": 1}), id="heartbeat-without-id"),
    pytest.param(json.dumps({"type": "node_control", "command": "explode"}), id="bad-control-command"),
]


@pytest.mark.parametrize("text", MALFORMED)
async def test_malformed_frame_is_invalid_message(nodes, node_token, text):
    node = await nodes(node_token).connect()
    ack = await node.register(langs=["zh", "en"])
    error = await node.rejected(text)
    assert error["code"] == "INVALID_MESSAGE"
    assert isinstance(error["message"], str) and len(error["message"]) > 5
    # the socket stays open and the refused frame changed nothing
    again = await node.register(langs=["zh", "en"])
    assert again["node_id"] == ack["node_id"]
    assert node_record(ack["node_id"])["slots_asked"] == "4"


async def test_binary_frame_is_invalid_message(nodes, node_token):
    node = await nodes(node_token).connect()
    await node.register()
    await node.comm.send_input({"type": "websocket.receive", "bytes": b'{"type":"node_heartbeat"}'})
    error = await node.recv()
    assert error["type"] == "error" and error["code"] == "INVALID_MESSAGE"


async def test_frame_over_the_size_limit_closes_1009(nodes, node_token, settings):
    settings.SCHEDULER_MAX_FRAME_BYTES = 2048
    node = await nodes(node_token).connect()
    under = register_frame(langs=["zh", "en"]) | {"padding": "x" * 1200}
    assert len(json.dumps(under)) < 2048
    await node.register(under)
    # fewer than 2048 characters, more than 2048 bytes: the limit counts bytes
    over = json.dumps({"type": "node_heartbeat", "node_id": node.node_id, "padding": "语" * 700}, ensure_ascii=False)
    assert len(over) < 2048 < len(over.encode())
    await node.send(over)
    assert await node.closed() == 1009


async def test_second_register_updates_capabilities_and_keeps_the_id(nodes, node_token, published):
    node = await nodes(node_token).connect()
    first = await node.register(langs=["zh", "en"], slots=2)
    assert pool_members("auto:zh-en") == [first["node_id"]]
    second = await node.register(langs=["ja", "ko"], node_id="node-11111111", slots=5)
    assert second == first
    record = node_record(first["node_id"])
    assert record["slots"] == "5"
    assert pool_members("auto:zh-en") == [] and pool_members("auto:ja-ko") == [first["node_id"]]
    assert pools_holding(published, first["node_id"]) == ["auto:ja-ko", "auto:ja~ko", "auto:ko-ja"]
    assert not await store.async_client().exists(keys.node("node-11111111"))


async def test_heartbeat_capabilities_recompute_pools(nodes, node_token, published, settings):
    settings.SCHEDULER_HEARTBEAT_INTERVAL_S = WINDOW_S  # a node is re-pooled at most once per interval
    node = await nodes(node_token).connect()
    await node.register(langs=["zh", "en"])
    node_id = node.node_id
    assert pools_holding(published, node_id) == ["auto:en-zh", "auto:en~zh", "auto:zh-en"]

    # one-way only: zh is no longer synthesised
    await node.heartbeat(language_capabilities={"asr_languages": ["zh", "en"], "tts_languages": ["en"],
                                                "semantic_languages": ["zh", "en"]})
    await node.settled()
    assert pools_holding(published, node_id) == ["auto:zh-en"]
    assert json.loads(node_record(node_id)["pools"]) == ["auto:zh-en"]

    # a heartbeat without capability fields leaves them as stored
    stored = node_record(node_id)
    await node.heartbeat()
    await node.settled()
    record = node_record(node_id)
    for field in ("language_capabilities", "capability_by_type", "installed_services", "pools", "caps"):
        assert record[field] == stored[field], field
    assert pools_holding(published, node_id) == ["auto:zh-en"]

    # only capability_by_type: tts not ready, so no automatic pool; the languages stay stored
    await asyncio.sleep(WINDOW_S)
    await node.heartbeat(capability_by_type=[{"type": "asr", "ready": True}, {"type": "nmt", "ready": True},
                                             {"type": "tts", "ready": False, "reason": "loading"}])
    await node.settled()
    record = node_record(node_id)
    assert pools_holding(published, node_id) == []
    assert record["status"] == "registering"
    assert record["language_capabilities"] == stored["language_capabilities"]

    # ready again, with new languages
    await asyncio.sleep(WINDOW_S)
    await node.heartbeat(capability_by_type=[{"type": s, "ready": True} for s in ("asr", "nmt", "tts")],
                         language_capabilities={"asr_languages": ["ja", "ko"], "tts_languages": ["ja", "ko"],
                                                "semantic_languages": ["ja", "ko"]})
    await node.settled()
    assert pools_holding(published, node_id) == ["auto:ja-ko", "auto:ja~ko", "auto:ko-ja"]
    assert node_record(node_id)["status"] == "ready"
    assert await node.quiet(), "heartbeats get no reply"


async def test_disconnect_takes_the_node_out_of_every_pool_at_once(nodes, node_token, published):
    node = await nodes(node_token).connect()
    await node.register(langs=LANGS14)
    node_id = node.node_id
    held = pools_holding(published, node_id)
    assert len(held) == 14 * 13 + 14 * 13 // 2
    await node.disconnect()
    record = node_record(node_id)
    assert record["status"] == "offline"
    assert pools_holding(published, node_id) == []
    assert await store.async_client().zscore(keys.leases(), node_id) is None


async def test_same_token_reconnect_replaces_the_old_socket(nodes, node_token, published):
    old = await nodes(node_token).connect()
    ack = await old.register(langs=["zh", "en"])
    new = await nodes(node_token).connect()
    again = await new.register(langs=["zh", "en"], node_id=ack["node_id"])
    assert again == ack
    assert await old.closed() == 4409
    channel = node_record(ack["node_id"])["channel"]
    await old.disconnect()  # the replaced socket going away does not take the node offline
    record = node_record(ack["node_id"])
    assert record["status"] == "ready" and record["channel"] == channel
    assert pool_members("auto:zh-en") == [ack["node_id"]]
    await new.heartbeat()
    await new.settled()
    await new.disconnect()
    assert node_record(ack["node_id"])["status"] == "offline"


async def test_other_token_cannot_take_a_connected_id(nodes, node_token, other_token, published):
    owner = await nodes(node_token).connect()
    ack = await owner.register(langs=["zh", "en"])
    channel = node_record(ack["node_id"])["channel"]
    thief = await nodes(other_token).connect()
    await thief.send(register_frame(langs=["zh", "en"], node_id=ack["node_id"]))
    assert await thief.closed() == 4409
    await thief.disconnect()
    record = node_record(ack["node_id"])
    assert record["status"] == "ready" and record["channel"] == channel
    assert record["token"] == await sync_to_async(token_id)(node_token)
    await owner.heartbeat()
    await owner.settled()

    # once offline, any token may claim the id
    await owner.disconnect()
    assert node_record(ack["node_id"])["status"] == "offline"
    heir = await nodes(other_token).connect()
    claimed = await heir.register(langs=["zh", "en"], node_id=ack["node_id"])
    assert claimed["node_id"] == ack["node_id"] and claimed["status"] == "ready"
    assert node_record(ack["node_id"])["token"] == await sync_to_async(token_id)(other_token)


# --- Status and slots -------------------------------------------------------------------------


async def test_status_registering_without_services_for_automatic_pools(nodes, node_token):
    node = await nodes(node_token).connect()
    ack = await node.register(langs=["zh", "en"], services=("asr", "nmt"))
    assert ack["status"] == "registering"
    assert node_record(ack["node_id"])["status"] == "registering"


async def test_status_follows_enabled_pools(nodes, node_token, auto_off, published):
    node = await nodes(node_token).connect()
    ack = await node.register(langs=["zh", "en"])
    assert ack["status"] == "registering"
    assert pools_holding(published, ack["node_id"]) == []

    await sync_to_async(import_pools)({"pools": [
        {"name": "zh-en", "pairs": [["zh", "en"]], "required_services": ["asr", "nmt", "tts"]},
    ]})
    record = node_record(ack["node_id"])
    assert record["status"] == "ready" and pool_members("zh-en") == [ack["node_id"]]
    second = await nodes(node_token).connect()
    assert (await second.register(langs=["zh", "en"]))["status"] == "ready"
    assert pool_members("zh-en") == sorted([ack["node_id"], second.node_id])

    await sync_to_async(import_pools)({"pools": [
        {"name": "zh-en", "enabled": False, "pairs": [["zh", "en"]]},
    ]})
    assert node_record(ack["node_id"])["status"] == "registering"
    assert pool_members("zh-en") == []
    third = await nodes(node_token).connect()
    assert (await third.register(langs=["zh", "en"]))["status"] == "registering"


async def test_slots_default_request_and_override(nodes, node_token, settings):
    settings.SCHEDULER_DEFAULT_NODE_SLOTS = 3
    plain = await nodes(node_token).connect()
    await plain.register(langs=["zh", "en"])
    assert node_record(plain.node_id)["slots"] == "3"
    asking = await nodes(node_token).connect()
    await asking.register(langs=["zh", "en"], slots=7)
    assert node_record(asking.node_id)["slots"] == "7"

    def override() -> None:
        NodeSlotOverride.objects.create(node_id=asking.node_id, slots=2)
        pools_publish()

    await sync_to_async(override)()
    assert node_record(asking.node_id)["slots"] == "2"
    assert node_record(plain.node_id)["slots"] == "3"
    await asking.register(langs=["zh", "en"], slots=9)
    assert node_record(asking.node_id)["slots"] == "2", "an admin override wins over what the node asks"


# --- Bounds on what a node declares -------------------------------------------------------------

LIVE_FIELDS = ("status", "caps", "pools", "slots", "slots_asked", "capver", "language_capabilities",
               "capability_by_type", "installed_services", "info", "load")


def many(count: int) -> list[str]:
    return [f"l{index}" for index in range(count)]


def langs_frame(langs: list[str]) -> dict[str, Any]:
    return {"language_capabilities": {"asr_languages": langs, "tts_languages": langs, "semantic_languages": langs}}


# Each: the field the error names, then from the settings in force: what else it names, the fields sent.
OVER_A_BOUND = [
    pytest.param("language_capabilities.asr_languages", lambda s: (
        str(s.SCHEDULER_NODE_MAX_LANGUAGES), {"language_capabilities": {
            "asr_languages": many(s.SCHEDULER_NODE_MAX_LANGUAGES + 1), "tts_languages": ["zh"]}}), id="asr-languages"),
    pytest.param("language_capabilities.tts_languages", lambda s: (
        str(s.SCHEDULER_NODE_MAX_LANGUAGES), {"language_capabilities": {
            "tts_languages": many(s.SCHEDULER_NODE_MAX_LANGUAGES + 1)}}), id="tts-languages"),
    pytest.param("language_capabilities.semantic_languages", lambda s: (
        str(s.SCHEDULER_NODE_MAX_LANGUAGES), {"language_capabilities": {
            "semantic_languages": many(s.SCHEDULER_NODE_MAX_LANGUAGES + 1)}}), id="semantic-languages"),
    pytest.param("language_capabilities.asr_languages", lambda s: (
        "16 characters", {"language_capabilities": {"asr_languages": ["zh", "zh_Hans_CN"]}}), id="language-code"),
    pytest.param("language_capabilities.semantic_languages", lambda s: (
        "two-way", {"language_capabilities": {"semantic_languages": ["en", "auto"]}}), id="auto"),
    pytest.param("capability_by_type", lambda s: (
        str(s.SCHEDULER_NODE_MAX_SERVICES),
        {"capability_by_type": [{"type": f"t{i}", "ready": True} for i in range(s.SCHEDULER_NODE_MAX_SERVICES + 1)]}),
        id="capability-by-type"),
    pytest.param("installed_services", lambda s: (
        str(s.SCHEDULER_NODE_MAX_SERVICES),
        {"installed_services": [{"service_id": f"s{i}", "type": "asr"} for i in range(s.SCHEDULER_NODE_MAX_SERVICES + 1)]}),
        id="installed-services"),
    pytest.param("max_concurrent_jobs", lambda s: (
        str(s.SCHEDULER_NODE_MAX_SLOTS), {"max_concurrent_jobs": s.SCHEDULER_NODE_MAX_SLOTS + 1}), id="slots"),
]


@pytest.mark.parametrize(("field", "over"), OVER_A_BOUND)
async def test_each_bound_is_refused_and_the_registration_stays_as_it_was(nodes, node_token, published, settings,
                                                                          field, over):
    bound, fields = over(settings)
    # a first register over a bound: no record, the socket stays open
    node = await nodes(node_token).connect()
    error = await node.rejected(register_frame(node_id="node-0000b0b0") | fields)
    assert error["code"] == "INVALID_MESSAGE" and field in error["message"] and bound in error["message"]
    assert not await store.async_client().exists(keys.node("node-0000b0b0"))

    # a registered node: a register again, or a heartbeat, over a bound changes nothing
    ack = await node.register(langs=["zh", "en"], slots=3)
    await node.heartbeat(resource_usage={"cpu_percent": 5.0, "running_jobs": 0})
    await node.settled()
    before = node_record(ack["node_id"])
    held = pools_holding(published, ack["node_id"])
    refused = [register_frame(["ja", "ko"], node_id=ack["node_id"], slots=5) | fields]
    if field != "max_concurrent_jobs":
        refused.append({"type": "node_heartbeat", "node_id": ack["node_id"], "timestamp": 1,
                        "resource_usage": {"cpu_percent": 99.0, "running_jobs": 2}, **fields})
    for frame in refused:
        error = await node.rejected(frame)
        assert error["code"] == "INVALID_MESSAGE" and field in error["message"] and bound in error["message"]
        after = node_record(ack["node_id"])
        assert {name: after.get(name) for name in LIVE_FIELDS} == {name: before.get(name) for name in LIVE_FIELDS}
        assert "pending" not in after
        assert pools_holding(published, ack["node_id"]) == held
    # within the bounds again: accepted as before
    assert (await node.register(langs=["ja", "ko"], slots=settings.SCHEDULER_NODE_MAX_SLOTS))["node_id"] == ack["node_id"]
    assert pools_holding(published, ack["node_id"]) == ["auto:ja-ko", "auto:ja~ko", "auto:ko-ja"]


async def test_the_bounds_are_settings(nodes, node_token, settings):
    settings.SCHEDULER_NODE_MAX_LANGUAGES = 2
    settings.SCHEDULER_NODE_MAX_SLOTS = 6
    node = await nodes(node_token).connect()
    error = await node.rejected(register_frame(["zh", "en", "ja"]))
    assert "at most 2" in error["message"]
    error = await node.rejected(register_frame(["zh", "en"], slots=7))
    assert "at most 6" in error["message"]
    ack = await node.register(langs=["zh", "en"], slots=6)
    assert node_record(ack["node_id"])["slots"] == "6"


async def test_a_flapping_node_is_re_pooled_at_most_once_per_interval(nodes, node_token, published, settings):
    settings.SCHEDULER_HEARTBEAT_INTERVAL_S = 1.0
    node = await nodes(node_token).connect()
    ack = await node.register(langs=["zh", "en"])
    node_id = ack["node_id"]
    registered = int(node_record(node_id)["capver"])  # counts every change of capabilities applied
    loop = asyncio.get_running_loop()
    started = loop.time()
    flips = [["ja", "ko"], ["fr", "de"], ["es", "it"]]
    sent = 0
    while loop.time() - started < 2.5:  # its capabilities change in every frame
        langs = flips[sent % len(flips)]
        if sent % 5 == 4:
            await node.send(register_frame(langs, node_id=node_id))  # a register again counts the same
            assert (await node.recv())["type"] == "node_register_ack"
        else:
            await node.heartbeat(**langs_frame(langs))
        sent += 1
        await asyncio.sleep(0.01)
    await node.heartbeat(**langs_frame(["pt", "ru"]))  # the latest word
    await node.settled()
    elapsed = loop.time() - started
    repools = int(node_record(node_id)["capver"]) - registered
    assert sent > 20
    assert 1 <= repools <= 1 + int(elapsed / 1.0), f"{repools} re-pools in {elapsed:.1f} s"
    # the latest capabilities are applied once the window has passed, by the next heartbeat
    await asyncio.sleep(1.05)
    await node.heartbeat()
    await node.settled()
    record = node_record(node_id)
    assert json.loads(record["language_capabilities"])["asr_languages"] == ["pt", "ru"]
    assert pools_holding(published, node_id) == ["auto:pt-ru", "auto:pt~ru", "auto:ru-pt"]
    assert "pending" not in record
    # and a change back to the stored capabilities within the window leaves nothing waiting
    await node.heartbeat(**langs_frame(["zh", "en"]))
    await node.heartbeat(**langs_frame(["pt", "ru"]))
    await node.settled()
    assert "pending" not in node_record(node_id)


async def test_a_node_resumes_itself_at_most_once_per_interval(nodes, node_token, published, settings):
    settings.SCHEDULER_HEARTBEAT_INTERVAL_S = WINDOW_S
    node = await nodes(node_token).connect()
    ack = await node.register(langs=["zh", "en"])
    node_id = ack["node_id"]

    await node.send({"type": "node_control", "command": "drain"})
    assert (await node.recv())["command"] == "drain"
    assert (await node.recv())["command"] == "drained"
    await node.send({"type": "node_control", "command": "resume"})  # the first in its window
    assert (await node.recv())["command"] == "resume"
    assert pool_members("auto:zh-en") == [node_id]
    await node.send({"type": "node_control", "command": "drain"})  # a drain is never held back
    assert (await node.recv())["command"] == "drain"
    assert (await node.recv())["command"] == "drained"
    error = await node.rejected({"type": "node_control", "command": "resume"})
    assert error["code"] == "RATE_LIMITED" and "resume" in error["message"]
    assert node_record(node_id)["status"] == "draining" and pool_members("auto:zh-en") == []
    await asyncio.sleep(WINDOW_S)
    await node.send({"type": "node_control", "command": "resume"})
    assert (await node.recv())["command"] == "resume"
    assert node_record(node_id)["status"] == "ready" and pool_members("auto:zh-en") == [node_id]
