"""A fleet of a few thousand node records watched by staff, on real daphne and worker processes:
the worker copies compute the fleet summary once per interval between them, and with a
dashboard viewer and a /metrics scrape loop open no tick of the server's event loop is late by
more than 500 ms (read from its own lag metric) and every round trip of a browser/node pair
ends. A regression guard with a generous bound, not a measure of speed (that is bench/)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from dispatch import fleet, keys, nodes, protocol, store
from tests.clients import LANGS14, FakeBrowser, FakeNode, register_frame
from tests.staff import DashboardSocket, fetch, login_cookie

pytestmark = pytest.mark.e2e

RECORDS = 3000
WATCH_S = 8.0
LATE_BOUND = "0.5"  # seconds: the lag histogram's bucket no tick may exceed


async def register_records(count: int) -> list[str]:
    """Node records written through the real registration script, eight at a time, as
    bench/pick.py registers them: 14 languages, 273 automatic pools each."""
    frame = protocol.decode_node_frame(json.dumps(register_frame(LANGS14, slots=2)).encode())
    queue = iter(range(count))
    ids: list[str] = []

    async def one() -> None:
        for index in queue:
            registered = await nodes.node_register(
                frame=frame, token="open", channel=f"test.watched!{index}", current_id=None  # type: ignore[arg-type]
            )
            assert registered.status == "ready"
            ids.append(registered.node_id)

    await asyncio.gather(*(one() for _ in range(8)))
    return ids


def lag_histogram(server: Any, process: str) -> dict[str, float]:
    """The process's loop-lag samples on /metrics: bucket bound (or sum, count) → value."""
    found = {}
    for line in fetch(f"{server.http()}/metrics").body.splitlines():
        if line.startswith("scheduler_event_loop_lag_seconds") and f'process="{process}"' in line:
            name, value = line.rsplit(" ", 1)
            key = name.split('le="')[1].split('"')[0] if 'le="' in name else name.split("{")[0].rsplit("_", 1)[1]
            found[key] = float(value)
    return found


async def test_two_worker_copies_compute_the_summary_once_per_interval(stack):
    server = stack(worker=False)
    server.start_worker()
    server.start_worker()
    client = store.async_client()

    async def both_alive() -> bool:
        return (await fleet.fleet_live()).workers_alive == 2 and bool(await client.hget(keys.fleet(), "passes"))

    deadline = time.monotonic() + 20
    while not await both_alive():
        assert time.monotonic() < deadline, "the two worker copies never reported in"
        await asyncio.sleep(0.1)
    first, started = int(await client.hget(keys.fleet(), "passes")), time.monotonic()
    await asyncio.sleep(3.0)
    passes = int(await client.hget(keys.fleet(), "passes")) - first
    elapsed = time.monotonic() - started
    assert 1 <= passes <= elapsed + 1, f"{passes} passes in {elapsed:.1f} s by two copies: one per second at most"


async def test_a_watched_fleet_keeps_every_tick_on_time_and_every_round_trip_ends(stack, node_token, settings):
    settings.SCHEDULER_HEARTBEAT_INTERVAL_S = 600  # the records' leases outlast the test
    server = stack()
    records = await register_records(RECORDS)
    node = await FakeNode.connect(server.ws(), node_token)
    await node.register(langs=["sw", "yo"], slots=2)  # a pair no record serves: its jobs come here

    async def answer() -> None:
        while True:
            frame = await node.recv(timeout=3600)
            if frame["type"] == "job_assign":
                await node.send(node.result_for(frame))

    answering = asyncio.ensure_future(answer())
    viewer = await DashboardSocket.connect(server.http(), await sync_to_async(login_cookie)(staff=True))
    first = await viewer.snapshot(lambda f: f["totals"]["node_count"] > RECORDS, timeout=15)
    assert len(first["nodes"]) == fleet.PAGE_SIZE and first["page"]["rows"] == RECORDS + 1
    stop = asyncio.Event()
    frames = scrapes = 0
    paged: list[str] = []

    async def watch() -> None:
        """The viewer narrows to a pool sorted by free slots and turns a page, then watches."""
        nonlocal frames
        view = {"type": "view", "pool": "auto:zh-en", "sort": "free", "order": "desc"}
        await viewer.request(view)
        shown = await viewer.snapshot(lambda f: f["view"]["pool"] == "auto:zh-en" and f["page"]["built"])
        assert shown["page"]["rows"] == RECORDS and [pool["name"] for pool in shown["pools"]] == ["auto:zh-en"]
        await viewer.request({**view, "page": 1})
        turned = await viewer.snapshot(lambda f: f["page"]["index"] == 1 and f["page"]["built"])
        paged.extend(row["id"] for frame in (shown, turned) for row in frame["nodes"])
        while not stop.is_set():
            await viewer.snapshot()
            frames += 1

    async def scrape() -> None:
        nonlocal scrapes
        while not stop.is_set():
            assert (await asyncio.to_thread(fetch, f"{server.http()}/metrics")).status == 200
            scrapes += 1
            await asyncio.sleep(0.2)

    watching = [asyncio.ensure_future(watch()), asyncio.ensure_future(scrape())]
    browser = await FakeBrowser.connect(server.ws())
    assert (await browser.init("sw", "yo"))["type"] == "session_init_ack"
    round_trips = 0
    deadline = time.monotonic() + WATCH_S
    while time.monotonic() < deadline:
        await browser.utterance(round_trips)
        ending = await browser.ending(timeout=10)
        assert ending["type"] == "translation_result", ending
        round_trips += 1
        await asyncio.sleep(0.05)  # well under the session's rate limit
    stop.set()
    await asyncio.gather(*watching)
    assert frames >= WATCH_S / 2 and scrapes >= WATCH_S and round_trips > 0
    assert paged == sorted(records, reverse=True)[: 2 * fleet.PAGE_SIZE], "all free alike: ties by node id"

    # the histogram is published every couple of seconds: wait for one that covers the window
    process = f"{socket.gethostname()}:{server.servers[0].pid}"
    await asyncio.sleep(3)
    histogram = await asyncio.to_thread(lag_histogram, server, process)
    assert histogram["count"] > WATCH_S / 0.05 / 2, histogram
    assert histogram[LATE_BOUND] == histogram["count"], f"a tick of the server's loop was more than 0.5 s late: {histogram}"
    answering.cancel()
    await asyncio.gather(browser.close(), node.close(), viewer.close())
