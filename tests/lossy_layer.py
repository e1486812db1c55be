"""A channel layer that loses chosen messages, like a pub/sub delivery that never arrives.

Server processes of fault tests run with ``CHANNEL_LAYER_BACKEND=tests.lossy_layer.LossyLayer``
and ``LOSSY_DROP=job.assign:2,job.ended:3``: the 2nd ``job.assign`` and the 3rd ``job.ended``
sent by that process are dropped (counted per process)."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from dispatch.layers import LocalFirstPubSubChannelLayer


class LossyLayer(LocalFirstPubSubChannelLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: Counter[str] = Counter()
        self.drops: dict[str, set[int]] = {}
        for item in filter(None, os.environ.get("LOSSY_DROP", "").split(",")):
            kind, _, nth = item.partition(":")
            self.drops.setdefault(kind, set()).add(int(nth))

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        kind = message.get("type", "")
        self.sent[kind] += 1
        if self.sent[kind] in self.drops.get(kind, ()):
            return
        await super().send(channel, message)
