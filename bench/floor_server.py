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
    from schedulerproj.server import daphne_options

    server = Server(
        application=application,
        **daphne_options(host=args.host, port=args.port, max_frame_bytes=1024 * 1024, name="bench-floor"),
    )

    def on_signal(signum: int, _frame: object) -> None:
        reactor.callFromThread(server.stop)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.run()
    sys.exit(0)


if __name__ == "__main__":
    main()
