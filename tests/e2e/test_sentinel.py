"""Redis Sentinel: the processes find the primary through a real sentinel, the primary is killed
under load, the sentinel promotes the replica, and traffic goes on. Every utterance ends
exactly once; jobs cut after the failover get results.

The primary, its replica and the sentinel are private servers of this test (the embedded
redis-server binary, the sentinel in ``--sentinel`` mode) on free TCP ports. The test process's
own clients point at the test run's Redis, not at these: checks use a client of their own."""

from __future__ import annotations

import asyncio
import collections
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.sentinel import Sentinel

from schedulerproj.embedded_redis import EmbeddedRedis, server_binary
from tests.clients import FakeBrowser, FakeNode, eventually
from tests.servers import free_port
from tests.traffic import Agent, Talker, job_counters, jobs_in_flight, status, used_slots

pytestmark = pytest.mark.e2e

MASTER = "mymaster"
SETTINGS = {
    "SCHEDULER_HEARTBEAT_INTERVAL_S": 5,  # lease 15 s: longer than the failover
    "SCHEDULER_JOB_TIMEOUT_S": 4,
    "SCHEDULER_DISPATCH_WAIT_S": 2,
    "SCHEDULER_MAX_ATTEMPTS": 3,
}
NODES, BROWSERS = 3, 3


class SentinelSet:
    """A primary, one replica and one sentinel (quorum 1) watching them; with ``password``, the
    Redis servers require it, and with ``sentinel_password`` the sentinel requires its own."""

    def __init__(self, directory: Path, password: str | None = None, sentinel_password: str | None = None) -> None:
        self.password, self.sentinel_password = password, sentinel_password
        self.primary = EmbeddedRedis(directory / "primary", append_only=False, port=free_port(), password=password)
        self.replica = EmbeddedRedis(
            directory / "replica", append_only=False, port=free_port(),
            extra_args=("--replicaof", "127.0.0.1", str(self.primary.port)), password=password,
        )
        self.directory = directory / "sentinel"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.client = redis.Redis(
            port=self.port, decode_responses=True, socket_connect_timeout=1, password=sentinel_password
        )

    def start(self) -> SentinelSet:
        self.primary.start()
        self.replica.start()
        self.directory.mkdir(parents=True)
        config = self.directory / "sentinel.conf"  # the sentinel rewrites it: a file of its own
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndaemonize no\ndir {self.directory}\n"
            f"logfile {self.directory / 'sentinel.log'}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {self.primary.port} 1\n"
            f"sentinel down-after-milliseconds {MASTER} 1000\n"
            f"sentinel failover-timeout {MASTER} 5000\n"
            + (f"sentinel auth-pass {MASTER} {self.password}\n" if self.password else "")
            + (f"requirepass {self.sentinel_password}\n" if self.sentinel_password else "")
        )
        self.process = subprocess.Popen([server_binary(), str(config), "--sentinel"], stdin=subprocess.DEVNULL)
        replica = redis.Redis(port=self.replica.port, decode_responses=True, password=self.password)
        deadline = time.monotonic() + 20
        while True:  # the replica is in sync and the sentinel knows it
            try:
                synced = replica.info("replication").get("master_link_status") == "up"
                known = [r for r in self.client.sentinel_slaves(MASTER) if r["flags"] == "slave"]
                if synced and known:
                    break
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"sentinel set did not come up:\n{self.log()}")
            time.sleep(0.1)
        return self

    def master_port(self) -> int:
        address: Any = self.client.sentinel_get_master_addr_by_name(MASTER)  # (host, port)
        return int(address[1])

    def master(self) -> redis.Redis:
        """A client of whichever server is the primary now."""
        return Sentinel(
            [("127.0.0.1", self.port)], sentinel_kwargs={"socket_timeout": 2, "password": self.sentinel_password},
        ).master_for(MASTER, socket_timeout=5, password=self.password)

    def log(self) -> str:
        path = self.directory / "sentinel.log"
        return path.read_text()[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.replica.stop()
        self.primary.stop()


@pytest.fixture
def sentinel_set(tmp_path: Path) -> Iterator[SentinelSet]:
    servers = SentinelSet(tmp_path)
    try:
        yield servers.start()
    finally:
        servers.stop()


async def test_primary_failover_under_load(sentinel_set, stack, node_token):  # stack stops first
    server = stack(
        servers=2,
        REDIS_URL="",  # only the sentinel says where Redis is
        REDIS_SENTINELS=f"127.0.0.1:{sentinel_set.port}",
        REDIS_SENTINEL_MASTER=MASTER,
        **SETTINGS,
    )
    rng = random.Random(5)
    agents = [Agent(server, node_token, index % 2, rng) for index in range(NODES)]
    await eventually(lambda: all(agent.connected for agent in agents))
    stop = asyncio.Event()
    talkers = [Talker(server, index % 2, stop) for index in range(BROWSERS)]
    await asyncio.sleep(3)

    sentinel_set.primary.process.kill()  # type: ignore[union-attr]  # SIGKILL: no goodbye
    killed_at = time.monotonic()
    old_port = sentinel_set.primary.port
    await eventually(lambda: sentinel_set.master_port() != old_port, timeout=30)
    failover_s = time.monotonic() - killed_at
    assert sentinel_set.master_port() == sentinel_set.replica.port
    await asyncio.sleep(5)  # traffic on the new primary
    stop.set()
    await asyncio.gather(*(talker.task for talker in talkers))
    for agent in agents:
        agent.task.cancel()

    kinds: collections.Counter[str] = collections.Counter()
    after = after_ok = 0
    promoted_at = killed_at + failover_s
    for talker in talkers:
        assert len(talker.sessions) == 1  # sockets stay open while Redis fails over
        session = talker.sessions[0]
        assert session.closed_by_server is False
        assert sorted(session.endings) == session.sent  # every utterance ended...
        for index, frames in session.endings.items():
            assert len(frames) == 1, f"utterance {index} ended {len(frames)} times: {frames}"  # ...once
            frame = frames[0]
            kinds[frame["type"] if frame["type"] != "error" else f"error {frame['code']}"] += 1
            if session.sent_at[index] > promoted_at + 1:
                after += 1
                after_ok += frame["type"] == "translation_result"
    assert after > 0 and after_ok == after  # jobs cut after the failover get results

    # live state on the new primary: nothing left in flight, every slot free (jobs whose ending
    # the primary took with it to its grave end by their timeouts)
    master = sentinel_set.master()
    node_ids = [agent.node_id for agent in agents]
    await eventually(lambda: jobs_in_flight(master) == 0 and used_slots(*node_ids, client=master) == [0] * NODES,
                     timeout=40)
    print(
        f"\nsentinel failover: promoted {failover_s:.1f} s after the primary was killed; "
        f"{sum(len(t.sessions[0].sent) for t in talkers)} utterances, each ended once: {dict(kinds)}; "
        f"{after} cut after the failover, all results; jobs ended on the new primary {job_counters(master)}"
    )


@pytest.fixture
def sentinel_set_with_passwords(tmp_path: Path) -> Iterator[SentinelSet]:
    servers = SentinelSet(tmp_path, password="server-secret", sentinel_password="sentinel-secret")
    try:
        yield servers.start()
    finally:
        servers.stop()


async def test_passwords_of_the_servers_and_of_the_sentinel(sentinel_set_with_passwords, stack, node_token):
    """REDIS_PASSWORD reaches the servers Sentinel hands out and REDIS_SENTINEL_PASSWORD the
    sentinel itself, for live state, the channel layer and the cache alike."""
    servers = sentinel_set_with_passwords
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=servers.primary.port).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=servers.port).ping()
    sentinel_env = {"REDIS_URL": "", "REDIS_SENTINELS": f"127.0.0.1:{servers.port}", "REDIS_SENTINEL_MASTER": MASTER}
    server = stack(servers=2, REDIS_PASSWORD="server-secret", REDIS_SENTINEL_PASSWORD="sentinel-secret", **sentinel_env)
    node = await FakeNode.connect(server.ws(0), node_token)
    await node.register(langs=["zh", "en"])
    browser = await FakeBrowser.connect(server.ws(1))  # frames cross processes on the channel layer
    await browser.init("zh", "en")
    await browser.utterance(0)
    job = await node.expect("job_assign")
    await node.send(node.result_for(job))
    assert (await browser.ending())["type"] == "translation_result"
    assert servers.master().hget(f"{server.env['SCHEDULER_REDIS_PREFIX']}:metrics", "jobs_result") == b"1"
    assert await asyncio.to_thread(status, f"{server.http(0)}/readyz") == 200

    # a wrong password: the process refuses to start (it publishes the pools first)
    for wrong in ({"REDIS_PASSWORD": "wrong", "REDIS_SENTINEL_PASSWORD": "sentinel-secret"},
                  {"REDIS_PASSWORD": "server-secret", "REDIS_SENTINEL_PASSWORD": "wrong"}):
        with pytest.raises(RuntimeError, match="did not start"):
            stack(servers=1, worker=False, **wrong, **sentinel_env)
