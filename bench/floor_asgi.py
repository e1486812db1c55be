"""The floors' ASGI application: what the stack costs before any scheduling.

``/echo``: a raw ASGI app that echoes each text frame (the floor of a round trip through daphne);
a frame starting with ``{"type":"node_heartbeat"`` is swallowed (the floor of a frame that needs
no reply).

``/relay/node`` and ``/relay/browser?to=<node channel>``: the naive Channels build of one job.
Plain ``AsyncWebsocketConsumer`` subclasses (channels' own ``dispatch``, its per-handler
``close_old_connections`` thread hop included): the browser's frame goes by
``channel_layer.send`` to the node's consumer and out to the node; the node's answer comes back
the same way. The node socket is told its channel name when it connects.

``/relay-nohop/...``: the same relay with consumers that skip that thread hop, as ours do.

``/relay-calls/...``: the no-hop relay plus one Redis script call before each of its two sends
(an EVALSHA of a script that does nothing, the frame as its argument): the two round trips our
design makes per job (pick-and-reserve, finish) and nothing else. No implementation of the
design on this stack can beat it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from typing import Any
from urllib.parse import parse_qs

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.floor_settings")

import redis.asyncio as aredis  # noqa: E402
from channels.consumer import get_handler_name  # noqa: E402
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402
from redis.exceptions import NoScriptError  # noqa: E402

HEARTBEAT_START = '{"type":"node_heartbeat"'


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.receive":
            text = message.get("text")
            if text is None:
                await send({"type": "websocket.send", "bytes": message.get("bytes")})
            elif not text.startswith(HEARTBEAT_START):
                await send({"type": "websocket.send", "text": text})
        elif kind == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif kind == "websocket.disconnect":
            return


class RelayNodeConsumer(AsyncWebsocketConsumer):
    reply_to = ""

    async def connect(self) -> None:
        await self.accept()
        await self.send(text_data=json.dumps({"channel": self.channel_name}))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.channel_layer.send(self.reply_to, {"type": "relay.result", "text": text_data})

    async def relay_job(self, event: dict[str, Any]) -> None:
        self.reply_to = event["reply"]
        await self.send(text_data=event["text"])


class RelayBrowserConsumer(AsyncWebsocketConsumer):
    to = ""

    async def connect(self) -> None:
        self.to = parse_qs(self.scope["query_string"].decode())["to"][0]
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.channel_layer.send(self.to, {"type": "relay.job", "text": text_data, "reply": self.channel_name})

    async def relay_result(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["text"])


class NoThreadHop:
    """``dispatch`` without channels' per-handler ``close_old_connections`` in a worker thread,
    as our own consumers do (``dispatch/sockets.py``)."""

    async def dispatch(self, message: dict[str, Any]) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)


class NoHopRelayNodeConsumer(NoThreadHop, RelayNodeConsumer):
    pass


class NoHopRelayBrowserConsumer(NoThreadHop, RelayBrowserConsumer):
    pass


# bench/run.py names this script's calls in MONITOR captures by its SHA1.
FLOOR_SCRIPT = "-- bench floor: one round trip, no work\nreturn 1"


FLOOR_SHA = hashlib.sha1(FLOOR_SCRIPT.encode()).hexdigest()


@functools.cache
def floor_client() -> Any:
    """One client for the server process (it runs one event loop), with our client's options."""
    from dispatch.store import CLIENT_OPTIONS

    return aredis.Redis.from_url(os.environ["REDIS_URL"], **CLIENT_OPTIONS)


async def script_call(text: str | None) -> None:
    """As ``dispatch.store.run`` calls our scripts: EVALSHA, the script sent on NOSCRIPT."""
    client = floor_client()
    try:
        await client.evalsha(FLOOR_SHA, 0, text or "")
    except NoScriptError:
        await client.script_load(FLOOR_SCRIPT)
        await client.evalsha(FLOOR_SHA, 0, text or "")


class CallingRelayNodeConsumer(NoHopRelayNodeConsumer):
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await script_call(text_data)
        await super().receive(text_data=text_data, bytes_data=bytes_data)


class CallingRelayBrowserConsumer(NoHopRelayBrowserConsumer):
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await script_call(text_data)
        await super().receive(text_data=text_data, bytes_data=bytes_data)


application = ProtocolTypeRouter(
    {
        "websocket": URLRouter(
            [
                re_path(r"^echo/?$", echo),
                re_path(r"^relay/node/?$", RelayNodeConsumer.as_asgi()),
                re_path(r"^relay/browser/?$", RelayBrowserConsumer.as_asgi()),
                re_path(r"^relay-nohop/node/?$", NoHopRelayNodeConsumer.as_asgi()),
                re_path(r"^relay-nohop/browser/?$", NoHopRelayBrowserConsumer.as_asgi()),
                re_path(r"^relay-calls/node/?$", CallingRelayNodeConsumer.as_asgi()),
                re_path(r"^relay-calls/browser/?$", CallingRelayBrowserConsumer.as_asgi()),
            ]
        )
    }
)
