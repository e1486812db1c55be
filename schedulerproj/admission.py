"""Admission of new connections: a fleet reconnecting at once takes its turn.

Every connection is accepted at once (no handshake left to the kernel's queue, whose SYN retries
back off for seconds), but at most ``limit`` are *opening* at a time: accepted, and not yet an
open WebSocket or a served HTTP request. The others wait, accepted and unread, first come first
served. A connection counts as opening for ``hold_s`` at most, so a peer that sends nothing, or
sends its request a byte at a time, cannot keep the others waiting (it is still served). Without it a process handed ten thousand opening handshakes works on all of them in the
same turns of its event loop: every open socket, Redis call and timer of the process waits
behind the whole storm (bench/storm.py measured round trips of tens of seconds, and Redis
connections timing out while they opened).

Runs on the reactor's thread only, driven by ``schedulerproj.server``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet import tcp


class Admission:
    def __init__(self, limit: int, hold_s: float, clock: Any) -> None:
        self.limit, self.hold_s, self.clock = limit, hold_s, clock  # clock: twisted's reactor
        self.opening: set[Any] = set()  # twisted TCP connections
        self.waiting: deque[Any] = deque()
        self.ports: list[Any] = []  # the listening ports, for a shutdown to close

    def arrived(self, connection: Any) -> None:
        """A connection was just accepted: in, or wait unread for a place."""
        if len(self.opening) < self.limit:
            self.admit(connection)
        else:
            connection.stopReading()
            self.waiting.append(connection)

    def admit(self, connection: Any) -> None:
        self.opening.add(connection)
        self.clock.callLater(self.hold_s, self.opened, connection)

    def opened(self, connection: Any) -> None:
        """Its WebSocket handshake or its first HTTP request has ended, it closed, or its
        ``hold_s`` ran out: the next one waiting comes in. Harmless when already counted out."""
        if connection in self.opening:
            self.opening.discard(connection)
            while self.waiting and len(self.opening) < self.limit:
                waiting = self.waiting.popleft()
                if waiting.connected and not waiting.disconnecting:  # else it closed meanwhile
                    self.admit(waiting)
                    waiting.startReading()

    def idle(self) -> bool:
        """No connection accepted and not yet served (a stopping server waits for them)."""
        return not self.opening and not self.waiting

    def connection_class(self) -> type[tcp.Server]:
        """The class for a listening port's accepted connections (its ``transport``)."""
        admission = self

        class AdmittedConnection(tcp.Server):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                admission.arrived(self)

            def connectionLost(self, reason: Any) -> None:
                admission.opened(self)
                super().connectionLost(reason)

        return AdmittedConnection
