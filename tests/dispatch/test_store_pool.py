"""Calls that come by the thousand, on the real Redis: nodes whose sockets all close at once all
go offline, and heartbeats arriving together are all counted, sharing script calls
(dispatch/batches.py) instead of queueing one call each behind the connection pool until some
time out; each caller gets its own reply."""

from __future__ import annotations

import asyncio
import json

import pytest

from dispatch import keys, nodes, protocol, store
from dispatch.batches import Batched
from tests.clients import register_frame

NODES = 60


async def evalsha_calls() -> int:
    stats = await store.async_client().info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def register(count: int) -> dict[str, str]:
    frame = protocol.decode_node_frame(json.dumps(register_frame(["sw", "yo"], slots=2)).encode())
    channels = {}
    for index in range(count):
        channel = f"test.pool!{index}"
        registered = await nodes.node_register(
            frame=frame, token="open", channel=channel, current_id=None  # type: ignore[arg-type]
        )
        channels[registered.node_id] = channel
    return channels


async def test_more_nodes_going_offline_at_once_than_connections_all_go_offline_in_few_calls(
    published, settings
):
    settings.REDIS_MAX_CONNECTIONS = 3
    client = store.async_client()  # this test's event loop: a client made with the setting above
    assert client.connection_pool.max_connections == 3
    channels = await register(NODES)
    before = await evalsha_calls()

    held = await asyncio.gather(*(nodes.node_offline(node_id=node_id, channel=channel)
                                  for node_id, channel in channels.items()))

    assert held == [[]] * NODES
    assert await evalsha_calls() - before <= 3  # one alone, then the rest in batches of 64
    statuses = [await client.hget(keys.node(node_id), "status") for node_id in channels]
    assert statuses == ["offline"] * NODES
    assert await client.zcard(keys.leases()) == 0
    assert await client.scard(keys.pool("auto:sw-yo")) == 0


async def test_each_caller_of_a_batch_gets_its_own_reply(published):
    channels = await register(4)
    ids = list(channels)
    wrong = nodes.node_offline(node_id=ids[0], channel="test.pool!someone-else")  # not its socket
    right = [nodes.node_offline(node_id=node_id, channel=channels[node_id], move_jobs=False) for node_id in ids[1:]]

    await asyncio.gather(wrong, *right)

    client = store.async_client()
    assert [await client.hget(keys.node(node_id), "status") for node_id in ids] == ["ready", "offline", "offline", "offline"]


async def test_a_failing_batch_fails_each_of_its_callers(published):
    broken = Batched("no_such_script", width=1, most=2)

    outcomes = await asyncio.gather(*(broken((), str(index)) for index in range(5)), return_exceptions=True)

    assert len(outcomes) == 5
    assert all(isinstance(outcome, FileNotFoundError) for outcome in outcomes)


async def test_a_caller_that_stops_waiting_leaves_the_others_their_replies(published):
    channels = await register(3)
    calls = [asyncio.ensure_future(nodes.node_offline(node_id=node_id, channel=channel, move_jobs=False))
             for node_id, channel in channels.items()]
    calls[0].cancel()

    with pytest.raises(asyncio.CancelledError):
        await calls[0]
    assert await asyncio.gather(*calls[1:]) == [[], []]


async def test_heartbeats_arriving_together_share_calls_and_each_gets_its_own_outcome(published):
    channels = await register(NODES)
    beat = protocol.decode_node_frame(json.dumps({"type": "node_heartbeat", "node_id": "x", "timestamp": 1}).encode())
    ids = list(channels)
    before = await evalsha_calls()

    outcomes = await asyncio.gather(
        nodes.node_heartbeat(node_id=ids[0], channel="test.pool!someone-else", frame=beat),  # type: ignore[arg-type]
        *(nodes.node_heartbeat(node_id=node_id, channel=channels[node_id], frame=beat) for node_id in ids[1:]),  # type: ignore[arg-type]
    )

    assert outcomes == ["replaced"] + ["ok"] * (NODES - 1)
    assert await evalsha_calls() - before <= 2
