"""The fleet summary and the node table's views, in this process on the real Redis: pages cover
a view in its order for every sort, filters keep exactly the nodes they name, totals and pool
figures equal what the fleet holds, and the summary is computed once per interval whichever
worker copy claims it. Expected values are computed here from every node record."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from dispatch import fleet, fleet_summary, keys, nodes, protocol, store
from dispatch.outbox import json_text
from nodes import dashboard
from tests.clients import register_frame


async def sent_frame(view: fleet.View) -> dict[str, Any]:
    """A dashboard frame as its socket sends it (parts of it are the worker's JSON, passed on)."""
    return json.loads(json_text(await dashboard.dashboard_frame(view)))

KINDS = [  # languages, ready services, slots: a mix of pools, statuses and capacities
    (["zh", "en"], ("asr", "nmt", "tts"), 4),
    (["fr", "de", "es"], ("asr", "nmt", "tts"), 2),
    (["ja", "ko"], ("asr", "nmt", "tts"), 3),
    (["zh", "en", "ja"], ("asr",), 1),  # no automatic pool: registering
]
NODES = 130  # three pages of 50


async def register(langs: list[str], services_ready: tuple[str, ...], slots: int, index: int) -> str:
    frame = protocol.decode_node_frame(json.dumps(register_frame(langs, services=services_ready, slots=slots)).encode())
    registered = await nodes.node_register(
        frame=frame, token="open", channel=f"test.fleet!{index}", current_id=None  # type: ignore[arg-type]
    )
    return registered.node_id


@pytest.fixture
async def fleet_of_nodes(published: str) -> list[str]:
    """NODES nodes of every kind; some draining, some offline; slots in use, failures and
    heartbeat times spread (arranged on the records as the scripts would have left them)."""
    rng = random.Random(19)
    ids = [await register(*KINDS[index % len(KINDS)], index=index) for index in range(NODES)]
    client = store.async_client()
    for index, node_id in enumerate(ids):
        record = await client.hmget(keys.node(node_id), "slots", "last_seen_ms")
        await client.hset(keys.node(node_id), mapping={
            "used": rng.randint(0, int(record[0])), "jobs_failed": rng.choice([0, 0, 1, 2, 7]),
            "last_seen_ms": int(record[1]) - rng.randint(0, 60) * 1000,
        })
        if index % 11 == 3:
            await nodes.node_drain(node_id=node_id, drain=True)
        elif index % 13 == 5:
            await nodes.node_offline(node_id=node_id, channel=f"test.fleet!{index}")
    return ids


async def records(ids: list[str]) -> list[dict[str, Any]]:
    client = store.async_client()
    out = []
    for node_id in ids:
        record = await client.hgetall(keys.node(node_id))
        record["id"] = node_id
        for name in ("slots", "used", "jobs_failed", "last_seen_ms"):
            record[name] = int(record.get(name, 0))
        record["pools"] = json.loads(record["pools"])
        record["free"] = max(0, record["slots"] - record["used"]) if record["status"] == "ready" else 0
        out.append(record)
    return out


SORT_VALUES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "id": lambda r: r["id"],
    "free": lambda r: (r["free"], r["id"]),
    "used": lambda r: (r["used"], r["id"]),
    "failed": lambda r: (r["jobs_failed"], r["id"]),
    "heartbeat": lambda r: (-r["last_seen_ms"], r["id"]),  # seconds since the last one, fewest first
}


async def whole_view(view: fleet.View) -> tuple[list[str], int, int]:
    """Every page of a view, in order (asked for, then one summary pass writes it); the page
    count and the rows count the frames said."""
    await fleet.dashboard_read(view)  # a viewer asks for it
    await fleet_summary.summary_compute("test-worker")
    shown: list[str] = []
    page = 0
    while True:
        frame = await sent_frame(replace(view, page=page))
        assert frame["page"]["built"], view
        if not frame["nodes"]:
            return shown, frame["page"]["pages"], frame["page"]["rows"]
        assert len(frame["nodes"]) <= view.size
        shown += [row["id"] for row in frame["nodes"]]
        page += 1


@pytest.mark.parametrize("sort", fleet.SORTS)
async def test_pages_cover_the_view_in_its_order_both_ways(fleet_of_nodes, sort):
    expected = [r["id"] for r in sorted(await records(fleet_of_nodes), key=SORT_VALUES[sort])]
    shown, pages, rows = await whole_view(fleet.View(sort=sort))
    assert shown == expected and (pages, rows) == (3, NODES)
    shown, _, _ = await whole_view(fleet.View(sort=sort, desc=True))
    assert shown == expected[::-1]
    last = await sent_frame(fleet.View(sort=sort, desc=True, page=2))
    assert [row["id"] for row in last["nodes"]] == expected[:NODES - 100][::-1], "the short page read backwards"
    past = await sent_frame(fleet.View(sort=sort, page=3))
    assert past["nodes"] == [] and past["page"]["rows"] == NODES


async def test_filters_keep_exactly_the_nodes_they_name(fleet_of_nodes):
    fleet_records = await records(fleet_of_nodes)
    prefix = fleet_of_nodes[0][:6]
    cases: list[tuple[dict[str, Any], Callable[[dict[str, Any]], bool]]] = [
        ({"status": "ready"}, lambda r: r["status"] == "ready"),
        ({"status": "draining"}, lambda r: r["status"] == "draining"),
        ({"status": "offline"}, lambda r: r["status"] == "offline"),
        ({"status": "registering"}, lambda r: r["status"] == "registering"),
        ({"pool": "auto:zh-en"}, lambda r: "auto:zh-en" in r["pools"]),
        ({"pool": "auto:de~fr", "status": "ready"}, lambda r: "auto:de~fr" in r["pools"] and r["status"] == "ready"),
        ({"node": prefix.upper()}, lambda r: r["id"].startswith(prefix)),
        ({"pair": "ja>zh"}, lambda r: {"ja", "zh"} <= set(json.loads(r["caps"])["asr"])),
        ({"pair": "zh → en", "status": "ready", "node": prefix},
         lambda r: r["status"] == "ready" and r["id"].startswith(prefix) and "zh" in json.loads(r["caps"])["asr"]),
        ({"pool": "no-such-pool"}, lambda r: False),
    ]
    for asked, keep in cases:
        view = fleet.View.parse({**asked, "sort": "free", "order": "desc"})
        expected = [r["id"] for r in sorted(fleet_records, key=SORT_VALUES["free"], reverse=True) if keep(r)]
        shown, _, rows = await whole_view(view)
        assert (shown, rows) == (expected, len(expected)), asked
    assert fleet.View.parse({"pair": "zh>", "node": "no spaces", "status": "lost"}) == fleet.View()


async def test_totals_and_pool_figures_equal_what_the_fleet_holds(fleet_of_nodes):
    fleet_records = await records(fleet_of_nodes)
    connected = [r for r in fleet_records if r["status"] != "offline"]
    await fleet_summary.summary_compute("test-worker")
    frame = await sent_frame(fleet.DEFAULT_VIEW)
    totals = frame["totals"]
    by_status = {status: sum(1 for r in fleet_records if r["status"] == status) for status in fleet.STATUSES}
    assert totals["nodes"] == by_status and totals["node_count"] == NODES
    assert all(by_status.values()), "every status is there"
    assert totals["slots_used"] == sum(r["used"] for r in connected)
    assert totals["slots_total"] == sum(r["slots"] for r in connected)
    pools = {pool["name"]: pool for pool in frame["pools"]}
    names = {name for r in connected for name in r["pools"]}
    assert set(pools) == names and len(names) > 10
    client = store.async_client()
    for name in names:
        ready = [r for r in connected if name in r["pools"] and r["status"] == "ready"]
        assert (pools[name]["members"], pools[name]["ready_nodes"]) == (
            sum(1 for r in connected if name in r["pools"]), len(ready)), name
        assert pools[name]["ready_nodes"] == await client.scard(keys.pool(name)), "its pool set agrees"
        assert (pools[name]["free"], pools[name]["total"]) == (sum(r["free"] for r in ready), sum(r["slots"] for r in ready))
    assert frame["pool_names"] == sorted(names)


async def test_the_summary_is_computed_once_per_interval_whichever_copy_claims_it(fleet_of_nodes):
    claims = await asyncio.gather(*(fleet_summary.summary_claimed(f"copy-{n}") for n in range(3)))
    assert sorted(claims) == [False, False, True]
    assert not await fleet_summary.summary_claimed("copy-0")
    passes = int(await store.async_client().hget(keys.fleet(), "passes"))
    await asyncio.sleep(fleet_summary.SUMMARY_EVERY_MS / 1000 + 0.1)
    assert await fleet_summary.summary_claimed("copy-1")
    assert int(await store.async_client().hget(keys.fleet(), "passes")) == passes + 1


async def test_a_view_is_written_while_asked_for_and_expired_ids_are_forgotten(fleet_of_nodes):
    view = fleet.View(status="ready", sort="failed")
    assert not (await fleet.dashboard_read(view)).page.built, "asked for the first time"
    await fleet_summary.summary_compute("test-worker")
    assert (await fleet.dashboard_read(view)).page.built
    wanted = await store.async_client().zrange(keys.fleet_views_wanted(), 0, -1)
    assert wanted == [view.wanted()], "the default view is always written, so never asked for"

    gone = fleet_of_nodes[0]
    await store.async_client().delete(keys.node(gone))  # its record expired
    await fleet_summary.summary_compute("test-worker")
    assert not await store.async_client().sismember(keys.nodes(), gone)
    assert (await fleet.dashboard_read(fleet.DEFAULT_VIEW)).page.rows == NODES - 1
