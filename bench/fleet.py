"""A fleet of idle nodes, each on its own socket, in the load generator's process.

On the full path they are ``fleetsim``'s simulated nodes (``SimNode``): each registers with 14
languages and heartbeats from its registration on, as a real node does (right after the ack, then
every interval), so no lease runs out while the rest of the fleet connects. On the floor (the
daphne echo) each sends the same register frame, has it echoed, and heartbeats the same way. A
socket the server closes is counted (``Fleet.closed``), not fatal, and its node sends no more; so
is a connection that could not be opened (``Fleet.unreachable``: a busy server's full backlog,
a handshake timed out).

A full-path fleet can also leave all at once (``fleet_close(at_once=True)``: every close frame
sent together; ``fleet_cut``: every socket cut without one, as a network blip does) and come back
all at once with the node ids it had (``fleet_reconnect``), as nodes do after a restart.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection

from fleetsim.frames import encode, heartbeat_frame, register_frame
from fleetsim.node import NodeObserver, NodeRefused, SimNode, heartbeats
from fleetsim.wire import CLOSED, UNREACHABLE, ws_connect


@dataclass(eq=False)
class Fleet(NodeObserver):
    """Idle nodes on their sockets, each heartbeating as a real node does from its registration
    on. A socket the server closes is counted (``closed``) and its node sends no more."""

    sockets: list[ClientConnection] = field(default_factory=list)
    node_ids: list[str] = field(default_factory=list)
    nodes: list[SimNode] = field(default_factory=list)  # the full path's
    seconds: float = 0.0  # to connect and register all of them
    sent: int = 0  # heartbeats sent, by the nodes' own loops and by bursts
    gone: set[str] = field(default_factory=set)  # registered nodes whose socket the server closed
    refused: int = 0  # sockets the server closed before their node was registered
    unreachable: int = 0  # connections that could not be opened (refused, timed out)
    beating: list[asyncio.Future[None]] = field(default_factory=list)  # the floor's heartbeats

    @property
    def closed(self) -> int:
        return len(self.gone) + self.refused + self.unreachable

    def count_sent(self) -> None:
        self.sent += 1

    def heartbeat_sent(self, node: SimNode) -> None:
        self.sent += 1

    def heartbeat_failed(self, node: SimNode) -> None:
        self.gone.add(node.node_id or "")

    async def join(self, node: SimNode) -> None:
        """The node connects and registers, and is counted: in the fleet, refused or unreachable."""
        try:
            await node.connect()
        except NodeRefused:
            self.refused += 1
            return
        except UNREACHABLE:
            self.unreachable += 1
            return
        assert node.ws is not None and node.node_id is not None
        self.nodes.append(node)
        self.sockets.append(node.ws)
        self.node_ids.append(node.node_id)

    async def beat(self, ws: ClientConnection, node_id: str) -> None:
        await heartbeats(ws, node_id, sent=self.count_sent)
        self.gone.add(node_id)


async def fleet_connect(base: str, count: int, *, concurrency: int, full: bool) -> Fleet:
    """``count`` nodes connect and register (``full``), or connect to ``/echo`` and have the
    same register frame echoed (the floor), ``concurrency`` at a time; each heartbeats from its
    ack on."""
    fleet = Fleet()
    frame = encode(register_frame()).decode()
    queue = iter(range(count))

    async def one() -> None:
        for index in queue:
            if full:
                await fleet.join(SimNode(base, observer=fleet))
                continue
            try:
                ws = await ws_connect(f"{base}/echo")
            except UNREACHABLE:
                fleet.unreachable += 1
                continue
            try:
                await ws.send(frame)
                await ws.recv()
            except CLOSED:
                fleet.refused += 1
                continue
            node_id = f"node-{index:08x}"
            fleet.sockets.append(ws)
            fleet.node_ids.append(node_id)
            fleet.beating.append(asyncio.ensure_future(fleet.beat(ws, node_id)))

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(concurrency)))
    fleet.seconds = time.perf_counter() - started
    return fleet


async def fleet_heartbeats(fleet: Fleet, *, rate: float) -> int:
    """Every node still connected sends one more heartbeat, paced at ``rate`` per second overall.
    Returns how many were sent."""
    origin = time.perf_counter()
    sent = 0
    for k, (ws, node_id) in enumerate(zip(fleet.sockets, fleet.node_ids, strict=True)):
        delay = origin + k / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if node_id in fleet.gone:
            continue
        try:
            await ws.send(heartbeat_frame(node_id))
        except CLOSED:
            fleet.gone.add(node_id)
            continue
        fleet.count_sent()
        sent += 1
    return sent


async def fleet_close(fleet: Fleet, *, at_once: bool = False) -> None:
    """Every node leaves (a close frame each), 100 at a time or ``at_once``."""
    for task in fleet.beating:  # first, so our own closing is not counted as the server's
        task.cancel()
    await asyncio.gather(*fleet.beating, return_exceptions=True)
    sem = asyncio.Semaphore(len(fleet.sockets) + 1 if at_once else 100)

    async def close(ws: ClientConnection) -> None:
        async with sem:
            await ws.close()

    async def leave(node: SimNode) -> None:
        async with sem:
            await node.close()

    if fleet.nodes:
        await asyncio.gather(*(leave(node) for node in fleet.nodes), return_exceptions=True)
    else:
        await asyncio.gather(*(close(ws) for ws in fleet.sockets), return_exceptions=True)


def fleet_cut(fleet: Fleet) -> None:
    """Every full-path node's socket cut at once, without a close frame (a network blip)."""
    for node in fleet.nodes:
        node.stopping = True
        for task in list(node.tasks):
            task.cancel()
        if node.ws is not None:
            node.ws.transport.abort()
            node.ws = None


async def fleet_reconnect(fleet: Fleet, *, concurrency: int) -> float:
    """Every full-path node connects and registers again with its id, ``concurrency`` at a time
    (each heartbeats from its ack on); returns the seconds until the last ack. A node refused or
    unreachable is counted and dropped from the fleet."""
    queue = iter(list(fleet.nodes))
    fleet.nodes, fleet.sockets, fleet.node_ids, fleet.gone = [], [], [], set()

    async def one() -> None:
        for node in queue:
            node.stopping = False
            await fleet.join(node)

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(concurrency)))
    return time.perf_counter() - started
