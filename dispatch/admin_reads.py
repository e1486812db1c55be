"""Reads of live state for the pool admin's guidance, each bounded whatever the fleet's size:
the automatic pools (a count, and a page of them with members and slots), and the languages
live nodes report (suggestions for the language fields). Reads only."""

from __future__ import annotations

import json
from dataclasses import dataclass

from dispatch import keys, store
from dispatch.store import as_int

PAGE_SIZE = 50  # automatic pools per page
MEMBERS_READ = 100  # members of one pool whose slots are summed; a bigger pool shows "≥"
LANGUAGE_SAMPLE = 256  # connected nodes whose capabilities give the language suggestions


def auto_pools_on() -> bool:
    """Whether the published configuration has automatic pools on."""
    return store.decoded(store.sync_client().hget(keys.config(), "auto")) == "1"


def auto_pools_count() -> int:
    """How many automatic pools have at least one member now (one ZCARD)."""
    return int(store.sync_client().zcard(keys.auto_pools()))


@dataclass(frozen=True)
class AutoPoolRow:
    name: str
    members: int  # dispatchable members (connected, ready, not drained)
    free: int  # free slots of the members read
    total: int  # slots of the members read
    members_read: int

    @property
    def pair(self) -> str:
        """``zh → en`` for ``auto:zh-en``, ``en ↔ zh`` for ``auto:en~zh``."""
        need = self.name.removeprefix("auto:")
        return need.replace("~", " ↔ ") if "~" in need else need.replace("-", " → ", 1)

    @property
    def partial(self) -> bool:
        """Slots were summed over some members only: the sums are lower bounds."""
        return self.members_read < self.members


@dataclass(frozen=True)
class AutoPoolsPage:
    matching: int  # automatic pools whose name starts with the filter
    page: int  # 1-based
    rows: list[AutoPoolRow]

    @property
    def pages(self) -> int:
        return max(1, -(-self.matching // PAGE_SIZE))


def auto_pools_page(*, page: int = 1, starting: str = "") -> AutoPoolsPage:
    """One page of the automatic pools in name order (those named ``auto:<starting>…`` when a
    filter is given): each with its member count and, summed over at most MEMBERS_READ of its
    members, free and total slots. Three pipelined round trips whatever the fleet's size."""
    client = store.sync_client()
    low, high = (b"-", b"+") if not starting else (b"[auto:" + starting.encode(), b"(auto:" + starting.encode() + b"\xff")
    matching = int(client.zlexcount(keys.auto_pools(), low, high))
    page = max(1, min(page, max(1, -(-matching // PAGE_SIZE))))
    names = store.decoded(
        client.zrangebylex(keys.auto_pools(), low, high, start=(page - 1) * PAGE_SIZE, num=PAGE_SIZE)
    )
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.scard(keys.pool(name))
        pipe.srandmember(keys.pool(name), MEMBERS_READ)  # every member when there are fewer
    replies = pipe.execute() if names else []
    counts = [int(replies[2 * i]) for i in range(len(names))]
    members = [store.decoded(replies[2 * i + 1]) or [] for i in range(len(names))]
    pipe = client.pipeline(transaction=False)
    for read in members:
        for node_id in read:
            pipe.hmget(keys.node(node_id), "status", "slots", "used")
    records = iter(store.decoded(pipe.execute()) if any(members) else [])
    rows = []
    for name, count, read in zip(names, counts, members, strict=True):
        free = total = 0
        for _ in read:
            status, slots, used = next(records)
            total += as_int(slots)
            if status == "ready":
                free += max(0, as_int(slots) - as_int(used))
        rows.append(AutoPoolRow(name=name, members=count, free=free, total=total, members_read=len(read)))
    return AutoPoolsPage(matching=matching, page=page, rows=rows)


def languages_reported(sample: int = LANGUAGE_SAMPLE) -> list[str]:
    """The languages that a random sample of connected nodes report (any of asr, semantic,
    tts), sorted: suggestions, never a rule. A language only a few nodes of a big fleet report
    may be missing; typing it is still allowed."""
    client = store.sync_client()
    node_ids = store.decoded(client.zrandmember(keys.leases(), sample)) or []
    pipe = client.pipeline(transaction=False)
    for node_id in node_ids:
        pipe.hget(keys.node(node_id), "caps")
    found: set[str] = set()
    for raw in store.decoded(pipe.execute()) if node_ids else []:
        if raw:
            caps = _json(raw)
            for stage in ("asr", "semantic", "tts"):
                found.update(code for code in caps.get(stage, ()) if isinstance(code, str))
    return sorted(found)



def _json(raw: str) -> dict[str, list[str]]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
