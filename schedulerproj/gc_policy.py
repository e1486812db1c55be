"""Python's cyclic garbage collector in a process that holds thousands of sockets.

With CPython's default thresholds (700, 10, 10) a young collection runs every 700 new objects,
and every object in flight at that moment (a frame being parsed, a Redis call awaiting its reply)
survives it and is promoted, though it dies a moment later. Promotions add up until a full
collection walks every object of the process, every socket's included: with 10,000 node sockets
open that held the event loop 0.3 to 0.9 s, every few seconds, with nobody doing anything
(BENCHMARKS.md, "the fleet watched", before this). Here:

- what start-up built (modules, Django, the application) is frozen out of every collection: it
  lives as long as the process;
- a young collection waits for ``YOUNG`` new objects, so far fewer short-lived ones are caught in
  flight and promoted, and full collections become rare;
- a full collection that holds the loop longer than ``WARN_S`` is logged, so a late loop tick
  (``dispatch.loop_lag``) can be told from our own code.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

log = logging.getLogger("schedulerproj.gc")

YOUNG = 50_000  # a young collection of 50,000 objects takes a few ms
WARN_S = 0.1


class _FullCollections:
    """A ``gc.callbacks`` entry: times the full collections, logs the long ones."""

    def __init__(self, warn_s: float) -> None:
        self.warn_s = warn_s
        self.started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self.started = time.perf_counter()
            return
        took = time.perf_counter() - self.started
        if took > self.warn_s:
            log.warning(
                "a full garbage collection held the loop %d ms (%d objects collected)",
                round(took * 1000), info["collected"],
            )


def settle(*, warn_s: float = WARN_S) -> None:
    """Call once, when start-up is done and before serving."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG, older, oldest)
    gc.callbacks[:] = [callback for callback in gc.callbacks if not isinstance(callback, _FullCollections)]
    gc.callbacks.append(_FullCollections(warn_s))
