"""The live-state client's connection pool on the real Redis: more calls at once than it has
connections wait their turn instead of failing, as when thousands of node sockets close together
and each takes its node offline."""

from __future__ import annotations

import asyncio
import json

from dispatch import keys, nodes, protocol, store
from tests.clients import register_frame

NODES = 60


async def test_more_nodes_going_offline_at_once_than_connections_all_go_offline(published, settings):
    settings.REDIS_MAX_CONNECTIONS = 3
    client = store.async_client()  # this test's event loop: a client made with the setting above
    assert client.connection_pool.max_connections == 3
    frame = protocol.decode_node_frame(json.dumps(register_frame(["sw", "yo"], slots=2)).encode())
    channels = {}
    for index in range(NODES):
        channel = f"test.pool!{index}"
        registered = await nodes.node_register(
            frame=frame, token="open", channel=channel, current_id=None  # type: ignore[arg-type]
        )
        channels[registered.node_id] = channel

    await asyncio.gather(*(nodes.node_offline(node_id=node_id, channel=channel)
                           for node_id, channel in channels.items()))

    statuses = [await client.hget(keys.node(node_id), "status") for node_id in channels]
    assert statuses == ["offline"] * NODES
    assert await client.zcard(keys.leases()) == 0
    assert await client.scard(keys.pool("auto:sw-yo")) == 0
