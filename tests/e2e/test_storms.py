"""A whole fleet at once on one real daphne process: registering after a restart, then every
socket cut by a network blip, or the server stopped under it. Nobody is refused, everyone is
ready, everyone is offline again soon after, and the server logs no error. (How fast is
bench/storm.py's business.)"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from dispatch import keys, store
from tests.clients import LANGS14, FakeNode, eventually

pytestmark = pytest.mark.e2e

NODES = 2000
# Generous: with no worker running no lease is ever swept, so only the closed sockets themselves
# can take these nodes offline.
OFFLINE_BOUND_S = 40.0
TROUBLE = re.compile(r"^\S+ (ERROR|CRITICAL) |^Traceback", re.MULTILINE)


async def register(base: str, token: str) -> FakeNode:
    node = await FakeNode.connect(base, token, open_timeout=120)  # a storm's tail waits its turn
    await node.register(langs=LANGS14)  # 273 automatic pools, as a real 14-language node
    return node


def statuses(node_ids: list[str]) -> list[Any]:
    client = store.sync_client()
    pipe = client.pipeline(transaction=False)
    for node_id in node_ids:
        pipe.hget(keys.node(node_id), "status")
    return [store.decoded(status) for status in pipe.execute()]


async def test_a_fleet_registers_at_once_and_leaves_at_once(stack: Any, node_token: str, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    server = stack(worker=False, server_log=log)

    opened = await asyncio.gather(*(register(server.ws(), node_token) for _ in range(NODES)), return_exceptions=True)

    refused = [outcome for outcome in opened if isinstance(outcome, BaseException)]
    assert refused == []
    nodes = [node for node in opened if isinstance(node, FakeNode)]
    node_ids = [node.node_id for node in nodes]
    assert len(set(node_ids)) == NODES
    assert set(statuses(node_ids)) == {"ready"}
    client = store.sync_client()
    assert client.scard(keys.pool("auto:zh-en")) == NODES
    assert client.zcard(keys.leases()) == NODES

    for node in nodes:  # a network blip: every socket reset at once, no close handshake
        node.ws.transport.abort()

    await eventually(lambda: client.zcard(keys.leases()) == 0, timeout=OFFLINE_BOUND_S)
    assert set(statuses(node_ids)) == {"offline"}
    assert client.scard(keys.pool("auto:zh-en")) == 0
    assert client.scard(keys.pool("auto:en~zh")) == 0
    trouble = TROUBLE.findall(log.read_text(errors="replace"))
    assert trouble == [], log.read_text(errors="replace")[-3000:]


async def test_a_stopping_server_takes_its_whole_fleet_offline_and_closes_it_with_1012(
    stack: Any, node_token: str, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    server = stack(worker=False, server_log=log)
    nodes = await asyncio.gather(*(register(server.ws(), node_token) for _ in range(NODES)))

    stopped = asyncio.ensure_future(asyncio.to_thread(server.stop_server, 0))  # SIGTERM, then wait for the exit
    codes = await asyncio.gather(*(node.closed(timeout=OFFLINE_BOUND_S) for node in nodes))
    await stopped

    assert set(codes) == {1012}
    client = store.sync_client()
    assert client.zcard(keys.leases()) == 0
    assert set(statuses([node.node_id for node in nodes])) == {"offline"}
    assert client.scard(keys.pool("auto:zh-en")) == 0
    trouble = TROUBLE.findall(log.read_text(errors="replace"))
    assert trouble == [], log.read_text(errors="replace")[-3000:]
