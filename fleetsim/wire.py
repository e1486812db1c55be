"""Sockets as the simulated clients open them, and the ways a socket ends."""

from __future__ import annotations

import asyncio

import websockets
from websockets.asyncio.client import ClientConnection, connect

# A socket the other end closed: the library says so, or the kernel does when the library has not
# read the close yet (nobody reads an idle node's socket).
CLOSED = (websockets.ConnectionClosed, OSError)
# What opening a socket raises when there is no scheduler to talk to at that address.
UNREACHABLE = (OSError, TimeoutError, websockets.InvalidHandshake, websockets.InvalidURI)


async def ws_connect(url: str, *, open_timeout: float = 60) -> ClientConnection:
    return await connect(
        url, max_size=None, compression=None, ping_interval=None, open_timeout=open_timeout, close_timeout=5
    )


async def pause(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; whether it was."""
    if seconds > 0 and not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), seconds)
        except TimeoutError:
            pass
    return stop.is_set()


def http_base(url: str) -> str:
    """The HTTP address of the scheduler behind a ``ws://`` base URL."""
    if url.startswith("wss://"):
        return "https://" + url[len("wss://"):]
    return "http://" + url.removeprefix("ws://")


def ws_base(url: str) -> str:
    """A base URL as the clients use it: ``ws://host:port`` (``http://`` is accepted too)."""
    url = url.strip().rstrip("/")
    for scheme, ws in (("http://", "ws://"), ("https://", "wss://")):
        if url.startswith(scheme):
            url = ws + url[len(scheme):]
    if "://" not in url:
        url = "ws://" + url
    return url
