"""The node socket through the whole ASGI application (router, token middleware, consumer),
in this process, with the real channel layer and live state on the real Redis."""

from __future__ import annotations

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


async def test_heartbeat_capabilities_recompute_pools(nodes, node_token, published):
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
    await node.heartbeat(capability_by_type=[{"type": "asr", "ready": True}, {"type": "nmt", "ready": True},
                                             {"type": "tts", "ready": False, "reason": "loading"}])
    await node.settled()
    record = node_record(node_id)
    assert pools_holding(published, node_id) == []
    assert record["status"] == "registering"
    assert record["language_capabilities"] == stored["language_capabilities"]

    # ready again, with new languages
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
