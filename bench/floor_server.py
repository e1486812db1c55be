"""The floor server: ``python -m bench.floor_server --port N`` (layer from ``BENCH_LAYER``).

It mirrors ``schedulerproj/server.py`` (uvloop under Twisted's asyncio reactor, daphne's
``Server`` with the same socket limits and no socket time limit) so the floors run under the
same entry conditions as the scheduler; only the application differs (``bench.floor_asgi``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)

    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from twisted.internet import asyncioreactor

    asyncioreactor.install(asyncio.new_event_loop())
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.floor_settings"
    import django

    django.setup()
    from daphne.server import Server
    from twisted.internet import reactor

    from bench.floor_asgi import application

    max_frame = 1024 * 1024
    hard_limit = max(4 * max_frame, max_frame + 65536)
    server = Server(
        application=application,
        endpoints=[f"tcp:port={args.port}:interface={args.host}"],
        signal_handlers=False,
        websocket_timeout=-1,
        websocket_max_message_size=hard_limit,
        websocket_max_frame_size=hard_limit,
        application_close_timeout=5,
        verbosity=0,
        server_name="bench-floor",
    )

    def on_signal(signum: int, _frame: object) -> None:
        reactor.callFromThread(server.stop)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.run()
    sys.exit(0)


if __name__ == "__main__":
    main()
