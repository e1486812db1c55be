"""Our entry point around daphne's server: ``python -m schedulerproj.server --port 5010``
(or ``--fd N``: serve a listening socket inherited from ``make run``'s launcher or systemd).

Why not ``daphne`` itself: its command line drops every socket after 24 h and installs signal
handlers that stop the reactor at once. Here sockets live as long as their peers want, frames
over ``SCHEDULER_MAX_FRAME_BYTES`` reach the consumer (which closes with 1009 instead of
autobahn dropping the connection), uvloop drives the event loop, and SIGTERM stops listening,
closes node sockets with 1012 (nodes reconnect elsewhere) and then exits. Once it accepts, it
says ``READY=1`` to ``NOTIFY_SOCKET`` when that is set (schedulerproj/handoff.py).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any

log = logging.getLogger("schedulerproj.server")

# After SIGTERM every socket is told (STOP_LIMIT_S at most: a store that does not answer, or a
# machine too busy; ten thousand nodes of 273 pools take 6 to 14 s to leave on our 2 shared
# cores; past it the rest are closed with 1012 at once), then the process exits as soon as every
# socket has closed, or DRAIN_GRACE_S later at most (a peer that is slow to read its close frame
# would otherwise get a reset instead).
DRAIN_GRACE_S = 5.0
STOP_LIMIT_S = 20.0

# Storms (docs/deployment.md, "Storms"): a whole fleet connecting or closing at once.
# - Every connection is accepted at once, but at most OPENING_LIMIT open at a time
#   (schedulerproj/admission.py): enough to keep a core busy, few enough that each turn of the
#   event loop stays short for the sockets already open. A silent or slow peer holds its place
#   for OPENING_HOLD_S at most.
# - LISTEN_BACKLOG: connections the kernel holds until we accept them (capped by
#   net.core.somaxconn); Twisted's default, 50, drops SYNs between two accepts of a busy
#   process, and a dropped SYN is retried only after 1, 3, 7 s...
# - A closed socket's consumer may take CLOSE_TIMEOUT_S to finish: its node leaves its pools
#   behind thousands of others, and its jobs move on after that (5 s killed the last of ten
#   thousand closing at once).
OPENING_LIMIT = 8
OPENING_HOLD_S = 1.0
LISTEN_BACKLOG = 4096
CLOSE_TIMEOUT_S = 30


def daphne_options(*, host: str, port: int, max_frame_bytes: int, name: str) -> dict[str, object]:
    """daphne's Server options we run with (the benchmark floors use the same): no socket time
    limit, room for storms (above), and a hard frame limit above ours so the consumer sees an
    oversized frame and closes with 1009 instead of autobahn dropping the connection."""
    hard_limit = max(4 * max_frame_bytes, max_frame_bytes + 65536)
    return {
        "endpoints": [f"tcp:port={port}:interface={host}:backlog={LISTEN_BACKLOG}"],
        "signal_handlers": False,
        "websocket_timeout": -1,
        "websocket_max_message_size": hard_limit,
        "websocket_max_frame_size": hard_limit,
        "application_close_timeout": CLOSE_TIMEOUT_S,
        "verbosity": 0,
        "server_name": name,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "5010")))
    parser.add_argument("--fd", type=int, help="serve this inherited listening socket instead of binding")
    args = parser.parse_args(argv)

    # The loop policy must be set before Twisted's asyncio reactor creates its loop.
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from twisted.internet import asyncioreactor

    asyncioreactor.install(asyncio.new_event_loop())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "schedulerproj.settings")
    import django

    django.setup()
    from daphne import ws_protocol
    from daphne.http_protocol import WebRequest
    from daphne.server import Server
    from django.conf import settings
    from twisted.internet import reactor

    from dispatch.config import pools_ensure_published
    from dispatch.loop_lag import loop_watch
    from dispatch.protocol import CloseCode
    from dispatch.sockets import live_sockets
    from dispatch.tenants import tenants_ensure_published
    from schedulerproj import gc_policy
    from schedulerproj.admission import Admission
    from schedulerproj.asgi import application
    from schedulerproj.handoff import adopt, notify_ready
    from schedulerproj.lifecycle import sessions_keep_alive, sockets_notify, store_watch

    admission = Admission(OPENING_LIMIT, OPENING_HOLD_S, reactor)

    class SchedulerWebSocketProtocol(ws_protocol.WebSocketProtocol):
        def serverClose(self, code: int | None = None) -> None:
            # autobahn's sendClose refuses 1008, 1009 and 1012, which RFC 6455 lets a server
            # send and our protocol uses (docs/protocol.md); the frame itself is fine.
            self.sendCloseFrame(code=1000 if code is None else int(code), isReply=False)

        def onOpen(self) -> None:
            admission.opened(self.transport)
            super().onOpen()

    ws_protocol.WebSocketFactory.protocol = SchedulerWebSocketProtocol
    pools_ensure_published()
    tenants_ensure_published()

    class SchedulerServer(Server):
        """Admits its connections a few at a time, and keeps its listening ports so a shutdown
        can stop accepting first."""

        def listen_success(self, port: Any) -> None:
            port.transport = admission.connection_class()
            admission.ports.append(port)
            super().listen_success(port)

        def protocol_disconnected(self, protocol: Any) -> None:
            super().protocol_disconnected(protocol)
            if isinstance(protocol, WebRequest) and protocol.transport is not None:
                admission.opened(protocol.transport)  # an HTTP request was served (not an upgrade)

    server = SchedulerServer(
        application=application,
        **daphne_options(
            host=args.host, port=args.port, max_frame_bytes=settings.SCHEDULER_MAX_FRAME_BYTES, name="scheduler"
        ),
    )
    if args.fd is not None:  # no port of its own: the inherited socket, once daphne has made its factory
        server.endpoints = []
        server.ready_callable = lambda: server.listen_success(adopt(args.fd, server.http_factory))

    stopping = False

    def shut_down() -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        log.info("stopping: no new connections, node sockets closed with 1012")
        for port in admission.ports:
            port.stopListening()
        asyncio.ensure_future(drain())
        # a last resort, should drain itself hang: past the limit, the close frames and their grace
        reactor.callLater(STOP_LIMIT_S + 2 * DRAIN_GRACE_S, stop_once)  # type: ignore[arg-type]  # (twisted's stub)

    async def drain() -> None:
        try:
            await asyncio.wait_for(sockets_notify("stopping"), STOP_LIMIT_S)
        except TimeoutError:
            log.warning("stopping: not every socket could be told in time; the rest are closed with 1012")
            for consumer in list(live_sockets):  # their nodes leave their pools if the store answers meanwhile
                asyncio.ensure_future(consumer.close(code=CloseCode.RECONNECT))
        # a socket leaves the set when its peer has closed; a request accepted just before the
        # listening stopped is answered
        for _ in range(int(DRAIN_GRACE_S / 0.05)):
            if not live_sockets and admission.idle():
                break
            await asyncio.sleep(0.05)
        stop_once()

    stopped = False

    def stop_once() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            server.stop()

    def on_signal(signum: int, _frame: object) -> None:
        reactor.callFromThread(shut_down)

    reactor.callWhenRunning(notify_ready)
    reactor.callWhenRunning(lambda: asyncio.ensure_future(store_watch()))
    reactor.callWhenRunning(lambda: asyncio.ensure_future(sessions_keep_alive()))
    reactor.callWhenRunning(lambda: asyncio.ensure_future(loop_watch()))
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("listening", extra={"code": f"fd {args.fd}" if args.fd is not None else f"{args.host}:{args.port}"})
    gc_policy.settle()
    server.run()
    sys.exit(0)


if __name__ == "__main__":
    main()
