"""The channel layer we ship: channels-redis's pub/sub layer, local first, one subscription per process.

A frame for a channel whose consumer lives in this process goes straight onto that consumer's
queue (serialised, exactly as a remote receiver would get it) instead of a PUBLISH and the push
back to this same process; frames between processes still go through Redis. Delivery stays
at-most-once either way, and the job deadlines of dispatch recover what is lost. ``make bench``
measures it against the plain pub/sub layer (BENCHMARKS.md).

Channels are named the way channels-redis's core layer names a process's own channels:
``<inbox>!<local id>``, where the inbox is one pub/sub channel per process (per event loop). The
plain pub/sub layer subscribes and unsubscribes a Redis channel for every socket, one after
another through one lock per Redis host, so ten thousand sockets opening or closing at once
queued for seconds (and consumers cancelled while waiting logged errors). Here a socket costs
no Redis call at all: the process subscribes its inbox once, a frame from another process is
published to that inbox with the channel's name in front, and this process hands it on.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from typing import Any

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer

SEPARATOR = b"\0"  # between the channel's name and the message, in a frame published to an inbox


class Inbox:
    """Stands in the loop layer's queue table for the process's inbox: hands each frame that
    arrives on it to the queue of the channel it names (none: the consumer has gone, dropped)."""

    def __init__(self, name: str, queues: dict[str, Any]) -> None:
        self.name = name
        self.queues = queues
        self.subscribed: asyncio.Future[None] | None = None

    def put_nowait(self, data: bytes) -> None:
        channel, _, message = data.partition(SEPARATOR)
        queue = self.queues.get(channel.decode())
        if queue is not None:
            queue.put_nowait(message)


_inboxes: weakref.WeakKeyDictionary[RedisPubSubLoopLayer, Inbox] = weakref.WeakKeyDictionary()


async def _inbox(layer: RedisPubSubLoopLayer) -> Inbox:
    """This loop's inbox, subscribed (once; again after a flush or a failed first try)."""
    inbox = _inboxes.get(layer)
    if inbox is None or layer.channels.get(inbox.name) is not inbox or _failed(inbox.subscribed):
        name = f"{layer.prefix}specific.{uuid.uuid4().hex}!"
        inbox = _inboxes[layer] = Inbox(name, layer.channels)
        layer.channels[name] = inbox
        inbox.subscribed = asyncio.ensure_future(layer._get_shard(name).subscribe(name))
    assert inbox.subscribed is not None
    await asyncio.shield(inbox.subscribed)  # one socket giving up must not undo it for the others
    return inbox


def _failed(future: asyncio.Future[None] | None) -> bool:
    return future is not None and future.done() and (future.cancelled() or future.exception() is not None)


class LocalFirstPubSubChannelLayer(RedisPubSubChannelLayer):
    async def new_channel(self, prefix: str = "specific.") -> str:
        layer = self._get_layer()
        channel = (await _inbox(layer)).name + uuid.uuid4().hex
        layer.channels[channel] = asyncio.Queue()
        return channel

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        layer = self._get_layer()
        queue = layer.channels.get(channel)
        if queue is not None:
            queue.put_nowait(self.serialize(message))
            return
        inbox, bang, _ = channel.partition("!")
        if not bang:  # not one of ours: as the plain layer sends
            await layer.send(channel, message)
            return
        inbox += bang
        await layer._get_shard(inbox).publish(inbox, channel.encode() + SEPARATOR + self.serialize(message))

    async def receive(self, channel: str) -> dict[str, Any]:
        layer = self._get_layer()
        inbox = _inboxes.get(layer)
        if inbox is None or not channel.startswith(inbox.name):
            return dict(await layer.receive(channel))
        queue = layer.channels.get(channel)
        if queue is None:  # received on again after a cancelled receive, as the plain layer allows
            queue = layer.channels[channel] = asyncio.Queue()
        try:
            message = await queue.get()
        except (asyncio.CancelledError, TimeoutError, GeneratorExit):
            # Its consumer is leaving (channels cancels the receive): forget the queue. There is
            # nothing to unsubscribe; the inbox stays for the process's other channels.
            layer.channels.pop(channel, None)
            raise
        return dict(self.deserialize(message))
