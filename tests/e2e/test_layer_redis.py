"""The channel layer on a Redis of its own (CHANNEL_LAYER_REDIS_URL), as a deployment past one
primary's ceiling runs it: a node on one process serves a browser on another, the frames between
them go through the layer's Redis, and the live state's Redis publishes nothing."""

from __future__ import annotations

import asyncio

import pytest

from dispatch import store
from schedulerproj.embedded_redis import EmbeddedRedis
from tests.clients import FakeBrowser, FakeNode

pytestmark = pytest.mark.e2e


@pytest.fixture
def layer_redis(tmp_path):
    server = EmbeddedRedis(tmp_path / "layer-redis", append_only=False).start()
    yield server
    server.stop()


def publishes(client) -> int:
    return int(client.info("commandstats").get("cmdstat_publish", {}).get("calls", 0))


async def test_frames_between_processes_go_through_the_layers_own_redis(stack, node_token, layer_redis):
    import redis

    layer = redis.Redis.from_url(layer_redis.url)
    live = store.sync_client()
    server = stack(servers=2, CHANNEL_LAYER_REDIS_URL=layer_redis.url)
    live_before, layer_before = publishes(live), publishes(layer)

    node = await FakeNode.connect(server.ws(0), node_token)
    await node.register(langs=["zh", "en"])
    browser = await FakeBrowser.connect(server.ws(1))
    await browser.init("zh", "en")

    async def answer() -> None:
        while True:
            job = await node.expect("job_assign", timeout=3600)
            await node.send(node.result_for(job))

    answering = asyncio.ensure_future(answer())
    for index in range(3):
        await browser.utterance(index)
        ending = await browser.ending()
        assert ending["type"] == "translation_result" and ending["utterance_index"] == index
    answering.cancel()
    await asyncio.wait([answering])

    assert publishes(layer) - layer_before >= 3 * 2, "each job's frames crossed processes through the layer's Redis"
    assert publishes(live) == live_before, "nothing was published on the live state's Redis"
    await asyncio.gather(browser.close(), node.close())
