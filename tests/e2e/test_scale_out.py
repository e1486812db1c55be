"""Scale-out on real processes: two daphne processes on one Redis (the channel layer carries
frames between them), a process killed under a node that holds jobs, and a rolling restart of
both processes under load. Every job ends exactly once."""

from __future__ import annotations

import asyncio
import collections
import random
import signal
import time

import pytest

from dispatch import fleet, keys, selectors, store
from tests.clients import FakeBrowser, FakeNode, eventually
from tests.traffic import (
    Agent,
    Talker,
    is_ending,
    job_counters,
    jobs_in_flight,
    keep_alive,
    ready,
    used_slots,
)

pytestmark = pytest.mark.e2e

SETTINGS = {
    "SCHEDULER_HEARTBEAT_INTERVAL_S": 1,  # lease 3 s
    "SCHEDULER_JOB_TIMEOUT_S": 20,  # jobs move on because their node is lost, never by timeout
    "SCHEDULER_DISPATCH_WAIT_S": 5,
}


async def answer_all(node: FakeNode, seen: list[str] | None = None) -> None:
    """Answer every job this node is given (until cancelled); note their ids in ``seen``."""
    while True:
        job = await node.expect("job_assign", timeout=3600)
        if seen is not None:
            seen.append(job["job_id"])
        await node.send(node.result_for(job))


async def test_node_on_one_process_browser_on_the_other(stack, node_token):
    server = stack(servers=2, **SETTINGS)
    node = await FakeNode.connect(server.ws(0), node_token)
    await node.register(langs=["zh", "en"])
    browser = await FakeBrowser.connect(server.ws(1))
    await browser.init("zh", "en")
    answering = asyncio.ensure_future(answer_all(node))
    for index in range(5):
        await browser.utterance(index)
    endings = [await browser.ending() for _ in range(5)]
    assert sorted(frame["utterance_index"] for frame in endings) == list(range(5))
    for frame in endings:
        assert frame["type"] == "translation_result"
        assert frame["text_translated"] == f"translated {frame['utterance_index']} by {node.node_id}"
        assert frame["session_id"] == browser.session_id and frame["trace_id"] == browser.trace_id
    # the other way round: a browser on the node's process, the node answering on process 0,
    # and ui_events crossing too
    other = await FakeBrowser.connect(server.ws(0))
    await other.init("zh", "en")
    await other.utterance(0)
    dispatched = await other.expect(lambda f: f["type"] == "ui_event" and f["event"] == "DISPATCHED")
    result = await other.ending()
    assert result["type"] == "translation_result" and result["job_id"] == dispatched["job_id"]
    assert [f for f in await browser.silent(0.5) if is_ending(f)] == []
    answering.cancel()
    await asyncio.wait([answering])
    assert used_slots(node.node_id) == [0]

    # what one job costs Redis (docs/deployment.md sizes maxmemory from this): in flight with its
    # 1 s of audio, then its story (no audio) with sentence-sized texts
    await browser.utterance(5)
    job = await node.expect("job_assign")
    client = store.sync_client()
    in_flight_bytes = client.memory_usage(keys.job(job["job_id"]), samples=0)
    texts = {"text_asr": "今天下午三点我们在会议室讨论下个季度的产品计划和预算安排，请大家准时参加。",
             "text_translated": "This afternoon at three we will discuss next quarter's product plan and budget "
                                "in the meeting room; please be on time."}
    await node.send(node.result_for(job, **texts))
    assert (await browser.ending())["text_translated"] == texts["text_translated"]
    story_bytes = client.memory_usage(keys.story(job["job_id"]), samples=0)
    print(f"\nredis memory: a job in flight with 1 s of audio {in_flight_bytes} B; its story {story_bytes} B")


@pytest.mark.parametrize("reconnect", ["at_once", "after_lease"])
async def test_node_process_killed_node_reconnects_to_the_other_no_job_lost(stack, node_token, reconnect):
    """SIGKILL: the dead process runs no disconnect handler, so its node's jobs move on either
    when the node registers again with its id on the other process (``at_once``: its record
    still names the dead socket, which is replaced) or when its lease runs out first
    (``after_lease``: the worker takes it offline)."""
    server = stack(servers=2, **SETTINGS)
    node = await FakeNode.connect(server.ws(0), node_token)
    await node.register(langs=["zh", "en"], slots=4)
    beats = asyncio.ensure_future(keep_alive(node))
    browser = await FakeBrowser.connect(server.ws(1))
    await browser.init("zh", "en")
    for index in range(3):
        await browser.utterance(index)
    held = {frame["job_id"]: frame for frame in [await node.expect("job_assign") for _ in range(3)]}
    spare = await FakeNode.connect(server.ws(1), node_token)
    await spare.register(langs=["zh", "en"], slots=4)
    beats.cancel()
    beats = asyncio.ensure_future(keep_alive(spare))

    await asyncio.to_thread(server.stop_server, 0, signal.SIGKILL)
    assert await node.closed() in (None, 1006)  # the TCP connection just dropped
    if reconnect == "after_lease":
        await eventually(lambda: selectors.node_record(node.node_id).get("status") == "offline", timeout=10)
    again = await FakeNode.connect(server.ws(1), node_token)
    ack = await again.register(langs=["zh", "en"], node_id=node.node_id, slots=4)
    assert ack["node_id"] == node.node_id and ack["status"] == "ready"
    beats.cancel()
    beats = asyncio.ensure_future(keep_alive(spare, again))

    moved = [await spare.expect("job_assign") for _ in range(3)]
    assert {frame["job_id"] for frame in moved} == set(held)
    for frame in moved:
        first = held[frame["job_id"]]
        assert frame["attempt_id"] == 2
        assert (frame["session_id"], frame["utterance_index"], frame["audio"]) == (
            first["session_id"], first["utterance_index"], first["audio"]
        )
        await spare.send(spare.result_for(frame))
    endings = [await browser.ending() for _ in range(3)]
    assert sorted(frame["utterance_index"] for frame in endings) == [0, 1, 2]
    assert all(f["type"] == "translation_result" and spare.node_id in f["text_translated"] for f in endings)

    # traffic goes on over the node that came back and the spare
    given_back: list[str] = []
    answering = [asyncio.ensure_future(answer_all(spare)), asyncio.ensure_future(answer_all(again, given_back))]
    for index in range(3, 11):
        await browser.utterance(index)
    later = [await browser.ending() for _ in range(8)]
    assert sorted(frame["utterance_index"] for frame in later) == list(range(3, 11))
    assert all(frame["type"] == "translation_result" for frame in later)
    assert [f for f in await browser.silent(1.0) if is_ending(f)] == []  # exactly once
    for task in answering:
        task.cancel()
    # the node that came back never got a job it had already had
    assert given_back and not set(given_back) & set(held)
    await asyncio.sleep(0.3)
    assert used_slots(node.node_id, spare.node_id) == [0, 0]
    assert jobs_in_flight() == 0
    print(f"\nkilled under a node ({reconnect}): {len(held)} jobs moved on with attempt 2, 8 more after")
    beats.cancel()


# --- Rolling restart under load -------------------------------------------------------------

NODES, BROWSERS = 4, 4


def open_sessions() -> set[str]:
    return {store.decoded(s) for s in store.sync_client().zrange(keys.sessions(), 0, -1)}


async def test_sessions_of_a_killed_process_are_closed_when_their_leases_run_out(stack, node_token):
    """A SIGKILLed process closes no session: their leases (3 heartbeat intervals, renewed by
    the live process) run out, and the worker closes them as a socket would have: their jobs
    are cancelled on their nodes. The other process's sessions stay."""
    server = stack(servers=2, **SETTINGS)
    node = await FakeNode.connect(server.ws(0), node_token)
    await node.register(langs=["zh", "en"], slots=2)
    beats = asyncio.ensure_future(keep_alive(node))
    browsers = [await FakeBrowser.connect(server.ws(index)) for index in (0, 1)]
    for browser in browsers:
        await browser.init("zh", "en")
    kept, killed = (browser.session_id for browser in browsers)
    assert open_sessions() == {kept, killed}
    await browsers[1].utterance(0)
    job = await node.expect("job_assign")  # held, never answered
    assert job["session_id"] == killed and used_slots(node.node_id) == [1]
    await asyncio.sleep(4.5)  # longer than a lease (3 s): both processes renew theirs
    assert open_sessions() == {kept, killed}

    await asyncio.to_thread(server.stop_server, 1, signal.SIGKILL)
    started = time.monotonic()
    cancel = await node.expect("job_cancel", timeout=10)
    assert time.monotonic() - started <= 3 + 1 + 1  # the lease, a renewal interval, the worker's pass
    assert (cancel["job_id"], cancel["reason"]) == (job["job_id"], "session_closed")
    assert open_sessions() == {kept}
    assert used_slots(node.node_id) == [0]
    assert store.sync_client().exists(keys.session(killed)) == 0
    await asyncio.sleep(4.5)
    assert open_sessions() == {kept}
    assert (await fleet.fleet_live()).sessions == 1
    beats.cancel()


async def test_a_session_the_store_closed_ends_its_socket(stack):
    """A live process that could not renew a session's lease in time (Redis out of its reach
    for 3 heartbeat intervals) finds the session closed at its next renewal: its socket ends
    with 1012 and the browser opens a new one."""
    from dispatch import history, sessions

    server = stack(servers=1, **SETTINGS)
    browser = await FakeBrowser.connect(server.ws(0))
    await browser.init("zh", "en")
    store.sync_client().zadd(keys.sessions(), {browser.session_id: 0})  # its lease ran out long ago
    expired, _, _ = store.run_sync(  # what the worker does on its next pass
        "sessions_expired", 100, 900, sessions.SESSION_CLOSED, int(history.job_deadline_s() * 1000)
    )
    assert expired == [browser.session_id]
    assert await browser.closed(timeout=5) == 1012  # at the next renewal (every 1 s here)
    again = await FakeBrowser.connect(server.ws(0))
    await again.init("zh", "en")
    assert open_sessions() == {again.session_id}


async def test_rolling_restart_of_both_processes_under_load(stack, node_token):
    """SIGTERM one process, wait for its nodes to be back on the other, start it again, then
    the same for the other process. Sessions on a stopping process end (their unfinished jobs
    are cancelled) and are closed with 1012; the browser opens a new session elsewhere. A
    session opened on process 0 after its restart stays up while process 1 restarts under
    the nodes that serve it."""
    server = stack(servers=2, **{**SETTINGS, "SCHEDULER_HEARTBEAT_INTERVAL_S": 2})
    rng = random.Random(11)
    agents = [Agent(server, node_token, index % 2, rng, slow=index < 2) for index in range(NODES)]
    await eventually(lambda: all(agent.connected for agent in agents))
    stop = asyncio.Event()
    talkers = [Talker(server, index % 2, stop) for index in range(BROWSERS)]
    await asyncio.sleep(2)
    started = time.monotonic()
    stop_s = []
    for index in (0, 1):
        on_it = [agent for agent in agents if agent.at == index]
        stopping = time.monotonic()
        await asyncio.to_thread(server.stop_server, index)  # SIGTERM
        stop_s.append(round(time.monotonic() - stopping, 2))
        assert server.servers[index].returncode == 0  # a clean exit, not a kill after the timeout
        await eventually(lambda i=index: all(agent.connected and agent.at != i for agent in agents), timeout=15)
        assert on_it and all(agent.closes and agent.closes[-1] == 1012 for agent in on_it), [
            agent.closes for agent in on_it
        ]
        await asyncio.sleep(1)  # one process carries everything for a while
        await asyncio.to_thread(server.start_server, index)
        await ready(f"{server.http(index)}/readyz")
        if index == 0:
            talkers.append(Talker(server, 0, stop))  # it will see process 1 restart under its nodes
        await asyncio.sleep(1.5)
    restart_s = time.monotonic() - started
    stop.set()
    await asyncio.gather(*(talker.task for talker in talkers))
    for agent in agents:
        agent.task.cancel()

    kept = closed = sent_kept = sent_closed = ended_closed = 0
    kinds: collections.Counter[str] = collections.Counter()
    for talker in talkers:
        for session in talker.sessions:
            for index, frames in session.endings.items():
                assert len(frames) == 1, f"utterance {index} ended {len(frames)} times: {frames}"
                assert index in session.sent
                frame = frames[0]
                kinds[frame["type"] if frame["type"] != "error" else f"error {frame['code']}"] += 1
            if session.closed_by_server is False:  # stayed up to the end: every utterance ended
                kept += 1
                sent_kept += len(session.sent)
                assert sorted(session.endings) == session.sent
            else:
                closed += 1
                sent_closed += len(session.sent)
                ended_closed += len(session.endings)
                assert session.closed_by_server == 1012
    assert closed >= BROWSERS + 2  # browsers of process 0 lost a socket twice, the others once
    survivor = talkers[-1].sessions
    assert len(survivor) == 1 and survivor[0].closed_by_server is False and len(survivor[0].sent) >= 5
    # no translation was dropped: whatever reached a browser was a result
    assert set(kinds) == {"translation_result"}

    # in Redis: every job of every session (closed ones too) ended once, nothing is left held
    await asyncio.sleep(0.5)
    session_ids = [session.browser.session_id for talker in talkers for session in talker.sessions]
    job_ids = [job_id for sid in session_ids for job_id in await selectors.session_job_ids(sid)]
    stories = await selectors.job_stories(job_ids)
    assert len(stories) == len(job_ids) and all(story.get("ending") for story in stories)
    counters = job_counters()
    assert sum(counters.values()) == len(job_ids)  # one ending counted per job
    assert counters["error"] == 0
    assert jobs_in_flight() == 0
    assert used_slots(*[agent.node_id for agent in agents]) == [0] * NODES
    metrics = store.decoded(store.sync_client().hgetall(keys.metrics()))
    # the slow nodes held jobs at each stop: those moved on (attempt 2) and still ended once
    assert int(metrics.get("reassignments", 0)) > 0 and sum(agent.moved_here for agent in agents) > 0
    print(
        f"\nrolling restart ({restart_s:.1f} s, SIGTERM to exit {stop_s} s): {len(job_ids)} jobs, ended {counters}; "
        f"reassignments {metrics.get('reassignments', 0)}; "
        f"{kept} sessions stayed up to the end ({sent_kept} utterances, each ended once); "
        f"{closed} sessions closed by a restart with 1012 ({sent_closed} utterances, {ended_closed} ended "
        f"before the close, none twice, the rest cancelled); frames {dict(kinds)}; "
        f"node closes {[agent.closes for agent in agents]}; "
        f"jobs per node {[agent.assigned for agent in agents]} (moved in: {[agent.moved_here for agent in agents]})"
    )
