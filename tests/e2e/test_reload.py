"""Restarts that real node agents survive. The agent reconnects once, 5 s after its socket
closes, and never again if that attempt is refused; a server that stops closes node sockets with
1012. ``make run`` (the launcher, run here as a process) holds the listening sockets, so a reload
(SIGHUP, ``make reload``) and a stop followed by a start refuse no connection, and the agent's
one retry registers it again."""

from __future__ import annotations

import asyncio
import os
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatch.selectors import node_record
from tests.clients import OneRetryNode
from tests.servers import Launcher

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One var folder for the module: the first start installs (migrations, static files, the
    development token), later starts find it installed, as a developer's second `make run` does."""
    return tmp_path_factory.mktemp("var")


@pytest.fixture
def launchers(live_prefix: str, var_dir: Path) -> Iterator[list[Launcher]]:
    started: list[Launcher] = []
    yield started
    for launcher in started:
        launcher.stop()


def probe(urls: list[str], stop: threading.Event) -> Counter[str]:
    """A new connection and a ``/healthz`` request after another, in a tight loop, until ``stop``:
    how each ended (``ok``, ``refused``, or the error's name)."""
    outcomes: Counter[str] = Counter()
    while not stop.is_set():
        for url in urls:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=30) as response:
                    outcomes["ok" if response.status == 200 else f"status {response.status}"] += 1
            except ConnectionRefusedError:
                outcomes["refused"] += 1
            except OSError as error:
                outcomes[type(getattr(error, "reason", error)).__name__] += 1
    return outcomes


async def registered_again(agent: OneRetryNode, registrations: int, timeout: float = 20) -> None:
    """Until the agent's retry has registered (``registrations`` in all) or failed."""
    deadline = time.monotonic() + timeout
    while len(agent.acks) < registrations and agent.gave_up is None:
        assert time.monotonic() < deadline, "the agent never retried"
        await asyncio.sleep(0.05)
    assert agent.gave_up is None, f"the agent's one retry failed: {agent.gave_up!r}"


async def test_reload_refuses_no_connection_and_agents_register_again(live_prefix, launchers, var_dir):
    launcher = Launcher(live_prefix, var_dir, workers=2)
    launchers.append(launcher)
    launcher.start()
    assert launcher.pid_file().read_text().strip() == str(launcher.process.pid)
    agents = [OneRetryNode(launcher.ws(index), launcher.dev_token()) for index in range(2)]
    for agent in agents:
        assert (await agent.register())["status"] == "ready"
    lives = [asyncio.ensure_future(agent.live()) for agent in agents]

    stop_probing = threading.Event()
    probing = asyncio.ensure_future(asyncio.to_thread(probe, [launcher.http(0), launcher.http(1)], stop_probing))
    await asyncio.sleep(0.3)
    await asyncio.to_thread(launcher.reload)  # `make reload`: each port's server replaced in turn
    for agent in agents:
        await registered_again(agent, 2)
    await asyncio.sleep(0.3)
    stop_probing.set()
    outcomes = await probing

    assert outcomes["refused"] == 0, outcomes
    assert set(outcomes) == {"ok"}, f"every connection made during the reload is answered: {outcomes}"
    for agent in agents:
        first, again = agent.acks
        assert agent.close_codes == [1012], "the old server closed the node socket with 1012"
        assert again["node_id"] == first["node_id"] and again["status"] == "ready"
        assert node_record(first["node_id"])["status"] == "ready"
    replaced = [line for line in launcher.output().splitlines() if line.startswith("reload: port ")]
    assert len(replaced) == 2, launcher.output()[-2000:]
    print(f"\nreload with two ports: {sum(outcomes.values())} requests during it, {dict(outcomes)}")
    for life in lives:
        life.cancel()


async def test_stop_and_start_within_the_agents_retry(live_prefix, launchers, var_dir):
    launcher = Launcher(live_prefix, var_dir)
    launchers.append(launcher)
    launcher.start()
    agent = OneRetryNode(launcher.ws(), launcher.dev_token())
    first = await agent.register()
    life = asyncio.ensure_future(agent.live())

    stopped = time.monotonic()
    assert await asyncio.to_thread(launcher.stop) == 0
    stop_s = time.monotonic() - stopped
    assert agent.close_codes == [1012]
    assert not launcher.pid_file().exists(), "the pid file goes with the launcher"
    answer_s = await asyncio.to_thread(launcher.start)  # already installed: the documented restart
    await registered_again(agent, 2)
    assert agent.acks[-1]["node_id"] == first["node_id"] and agent.acks[-1]["status"] == "ready"
    print(f"\nstop took {stop_s:.2f} s; the start answered /healthz {answer_s:.2f} s after it began")
    life.cancel()


async def test_a_server_that_holds_no_socket_strands_the_agent(stack):
    """The control: a server process that binds its own port and stops refuses the agent's one
    retry, and the agent stays away (why `make run` and systemd hold the socket)."""
    server = stack(worker=False, SCHEDULER_NODE_AUTH="open")
    agent = OneRetryNode(server.ws(), os.urandom(4).hex())
    await agent.register()
    life = asyncio.ensure_future(agent.live())
    server.stop_server(0)
    await asyncio.wait_for(life, 15)
    assert agent.close_codes == [1012]
    assert isinstance(agent.gave_up, ConnectionRefusedError)
