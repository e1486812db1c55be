"""The fleet's recent past for the dashboard: observations, not state (no decision reads them).

The worker takes one load sample every ``selectors.HISTORY_SAMPLE_S`` seconds from the fleet
summary it has just computed (whichever copy claims the slot first); the job submit script
counts jobs placed per minute (``keys.minute``).
Both are kept for the dashboard's 15-minute charts and then expire; ``selectors`` reads them.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from django.conf import settings

from dispatch import keys, selectors, store

KEEP_S = selectors.HISTORY_WINDOW_S + 60


def job_deadline_s() -> float:
    """The longest a job can legally last from its placement (docs/architecture.md, jobs); past
    it, its session recovers its ending from the story."""
    wait, timeout = settings.SCHEDULER_DISPATCH_WAIT_S, settings.SCHEDULER_JOB_TIMEOUT_S
    return wait + settings.SCHEDULER_MAX_ATTEMPTS * (timeout + wait) + 5


def job_index_keep_s() -> int:
    """How long a session's job ids (and a trace id's sessions) stay findable: the longest a
    job can last, then the history window its story is kept for."""
    return int(job_deadline_s()) + settings.SCHEDULER_JOB_HISTORY_S


async def fleet_sample(totals: dict[str, Any]) -> bool:
    """Worker: record the fleet's load (the summary's ``totals``) once per ``HISTORY_SAMPLE_S``
    seconds. Returns whether this call took the sample (another worker copy, or an earlier
    pass, may have)."""
    client = store.async_client()
    every = selectors.HISTORY_SAMPLE_S
    second = int(time.time()) // every * every
    key = keys.load_sample(second)
    if not await client.set(key, "", nx=True, ex=KEEP_S):
        return False
    sample = {
        "t": second * 1000,
        "used": totals["slots_used"],
        "total": totals["slots_total"],
        "ready": totals["nodes"].get("ready", 0),
        "cpu": totals["cpu"],
        "gpu": totals["gpu"],
    }
    await client.set(key, msgspec.json.encode(sample), ex=KEEP_S)
    return True
