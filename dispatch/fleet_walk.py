"""Bounded walks over the known nodes and the open sessions, for the admin's few questions that
no index answers (what a pool change would do, which nodes a token has connected now).

A walk reads in slices (one SSCAN or ZSCAN, then one pipelined read of the slice's records),
so Redis serves other clients between commands and no script holds it; it stops after ``cap``
ids and says so (``capped``), and the page then says "at least". Never on the dispatch path,
never on a page that refreshes itself.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field

from dispatch import keys, store

SLICE = 500  # ids per SSCAN/ZSCAN call and per pipelined read
NODES_CAP = 20_000  # node records one walk reads at most (the fleet's 10,000 and its offline tail)
SESSIONS_CAP = 20_000
FIRST_SHOWN = 50  # ids a page lists beside a count


class Walk:
    """The records of the ids in a set (nodes) or sorted set (sessions), ``fields`` of each
    (``None`` where missing); ids whose record has gone are skipped. Iterate once; then ``read``
    says how many ids were looked at and ``capped`` whether ids were left unread."""

    def __init__(self, kind: str, fields: tuple[str, ...], cap: int) -> None:
        self.kind, self.fields, self.cap = kind, fields, cap
        self.read = 0
        self.capped = False

    def _scan(self, cursor: int) -> tuple[int, list[str]]:
        client = store.sync_client()
        if self.kind == "nodes":
            cursor, ids = client.sscan(keys.nodes(), cursor, count=SLICE)
            return int(cursor), list(store.decoded(ids))
        cursor, pairs = client.zscan(keys.sessions(), cursor, count=SLICE)
        return int(cursor), [store.decoded(member) for member, _ in pairs]

    def _record(self, item_id: str) -> str:
        return keys.node(item_id) if self.kind == "nodes" else keys.session(item_id)

    def __iter__(self) -> Iterator[tuple[str, dict[str, str | None]]]:
        seen: set[str] = set()  # a scan may return an id twice while the set grows
        cursor = 0
        while True:
            cursor, found = self._scan(cursor)
            ids = [item for item in dict.fromkeys(found) if item not in seen]
            if self.read + len(ids) > self.cap:
                ids, self.capped = ids[: self.cap - self.read], True
            seen.update(ids)
            self.read += len(ids)
            if ids:
                pipe = store.sync_client().pipeline(transaction=False)
                for item in ids:
                    pipe.hmget(self._record(item), *self.fields)
                for item, values in zip(ids, pipe.execute(), strict=True):
                    record = dict(zip(self.fields, store.decoded(values), strict=True))
                    if any(value is not None for value in record.values()):
                        yield item, record
            if cursor == 0:
                return
            if self.read >= self.cap:
                self.capped = True
                return


def nodes_walk(fields: tuple[str, ...], cap: int | None = None) -> Walk:
    return Walk("nodes", fields, cap or NODES_CAP)


def sessions_walk(fields: tuple[str, ...], cap: int | None = None) -> Walk:
    return Walk("sessions", fields, cap or SESSIONS_CAP)


@dataclass
class IdCount:
    """How many ids, the first ``FIRST_SHOWN`` of them in sorted order (whatever order a walk
    found them in), and whether the count is a lower bound (the walk was capped)."""

    count: int = 0
    first: list[str] = field(default_factory=list)
    at_least: bool = False

    def add(self, item: str) -> None:
        self.count += 1
        if len(self.first) < FIRST_SHOWN or item < self.first[-1]:
            bisect.insort(self.first, item)
            del self.first[FIRST_SHOWN:]


def token_nodes(token_id: str, cap: int | None = None) -> IdCount:
    """The nodes connected with this token now (any status but offline)."""
    walk = nodes_walk(("token", "status"), cap)
    found = IdCount()
    for node_id, record in walk:
        if record["token"] == token_id and record["status"] not in (None, "offline"):
            found.add(node_id)
    found.at_least = walk.capped
    return found
