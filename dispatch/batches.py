"""Many sockets' calls of one script, sent together: a storm is a few round trips, not thousands.

When every node socket of a process closes at once (a network blip, a stop), each one's node
goes offline. One script call per node meant ten thousand calls queued behind the connection
pool, some of them waiting past its timeout. A :class:`Batched` script instead sends the calls
made while its previous call was in flight together in its next one, at most ``most`` at a time
(so one call never holds Redis for long). A call made while nothing is in flight goes at once,
as it would alone. One queue per event loop; no lock: only that loop touches it.

The script takes ``head`` after the prefix, then ``width`` arguments per call, and answers a
list with one reply per call, in order.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from dispatch import store


@dataclass
class _Queue:
    waiting: list[tuple[Sequence[Any], asyncio.Future[Any]]] = field(default_factory=list)
    sender: asyncio.Task[None] | None = None


class Batched:
    def __init__(self, script: str, *, width: int, most: int) -> None:
        self.script, self.width, self.most = script, width, most
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue] = weakref.WeakKeyDictionary()

    async def __call__(self, head: Sequence[Any], *args: Any) -> Any:
        """This call's reply. ``head`` must be the same for every call (settings, not data)."""
        assert len(args) == self.width
        loop = asyncio.get_running_loop()
        queue = self._queues.setdefault(loop, _Queue())
        reply = loop.create_future()
        queue.waiting.append((args, reply))
        if queue.sender is None:
            queue.sender = loop.create_task(self._send(queue, head))
        return await reply

    async def _send(self, queue: _Queue, head: Sequence[Any]) -> None:
        try:
            await asyncio.sleep(0)  # the calls made in this turn of the loop go along
            while queue.waiting:
                batch, queue.waiting = queue.waiting[: self.most], queue.waiting[self.most :]
                flat = [arg for args, _ in batch for arg in args]
                try:
                    replies = await store.run(self.script, *head, *flat)
                except Exception as error:  # every caller sees it, as it would alone
                    for _, reply in batch:
                        if not reply.done():
                            reply.set_exception(error)
                    continue
                for (_, reply), answer in zip(batch, replies, strict=True):
                    if not reply.done():  # its caller may have stopped waiting; the work is done anyway
                        reply.set_result(answer)
        finally:
            queue.sender = None
