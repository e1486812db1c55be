"""The channel layer we ship: channels-redis's pub/sub layer, local first.

A frame for a channel whose consumer lives in this process goes straight onto that consumer's
queue (serialised, exactly as a remote receiver would get it) instead of a PUBLISH and the push
back to this same process; frames between processes still go through Redis. Delivery stays
at-most-once either way, and the job deadlines of dispatch recover what is lost. ``make bench``
measures it against the plain pub/sub layer (BENCHMARKS.md).
"""

from __future__ import annotations

from typing import Any

from channels_redis.pubsub import RedisPubSubChannelLayer


class LocalFirstPubSubChannelLayer(RedisPubSubChannelLayer):
    async def send(self, channel: str, message: dict[str, Any]) -> None:
        layer = self._get_layer()
        queue = layer.channels.get(channel)
        if queue is not None:
            queue.put_nowait(self.serialize(message))
            return
        await layer.send(channel, message)
