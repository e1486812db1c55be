"""What staff pages and ``/metrics`` read about the fleet, at a cost that does not grow with it.

The worker computes one fleet summary per interval for the whole deployment
(``dispatch.fleet_summary``): totals, per-pool figures, and the node table's views. A view is a
set of filters (status, pool, node id prefix, served pair) and a sort; the worker writes each
view a viewer asked for in the last few seconds as one string of fixed-width node ids in order,
so a page is one GETRANGE and its rows are read live (one HMGET each). Here: what a view is,
and the reads. Nothing here reads every node.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import msgspec

from dispatch import keys, store
from dispatch.selectors import HISTORY_SAMPLE_S, HISTORY_WINDOW_S
from dispatch.store import as_int

SORTS = ("id", "free", "used", "failed", "heartbeat")  # heartbeat: seconds since the last one
STATUSES = ("ready", "registering", "draining", "offline")
ID_WIDTH = 16  # node ids are ``node-`` + 8 hex digits; each is padded to this in a view string
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
WANTED_FOR_S = 10  # a view no viewer asked for in this long is no longer written
MAX_VIEWS = 32  # views written per interval at most (the most recently asked)
LANGUAGE = r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*"
PAIR = re.compile(rf"^\s*({LANGUAGE})\s*(?:>|→|->|\s)\s*({LANGUAGE})\s*$")
NODE_PREFIX = re.compile(r"^[A-Za-z0-9-]{1,16}$")


@dataclass(frozen=True)
class View:
    """One node-table view: its filters, its sort, and the page looked at."""

    status: str = ""
    pool: str = ""
    node: str = ""  # node id prefix, lower case
    pair: str = ""  # a served pair, ``s>t``
    sort: str = "id"
    desc: bool = False
    page: int = 0
    size: int = PAGE_SIZE

    @classmethod
    def parse(cls, frame: dict[str, Any]) -> View:
        """A view from what a page sent; anything unknown or malformed is left out."""
        status = frame.get("status") if frame.get("status") in STATUSES else ""
        pool = str(frame.get("pool") or "")[:120]
        node = str(frame.get("node") or "").strip().lower()
        pair_match = PAIR.match(str(frame.get("pair") or ""))
        sort = frame.get("sort") if frame.get("sort") in SORTS else "id"
        return cls(
            status=str(status),
            pool=pool,
            node=node if NODE_PREFIX.match(node) else "",
            pair=f"{pair_match.group(1)}>{pair_match.group(2)}" if pair_match else "",
            sort=str(sort),
            desc=frame.get("order") == "desc",
            page=max(0, as_int(frame.get("page"))),
            size=min(MAX_PAGE_SIZE, max(1, as_int(frame.get("size")) or PAGE_SIZE)),
        )

    @property
    def filtered(self) -> bool:
        return bool(self.status or self.pool or self.node or self.pair)

    def wanted(self) -> str:
        """The view as the worker is asked for it: filters and sort (not order or page)."""
        return json.dumps([self.status, self.pool, self.node, self.pair, self.sort], separators=(",", ":"))

    @classmethod
    def from_wanted(cls, text: str) -> View | None:
        try:
            status, pool, node, pair, sort = json.loads(text)
        except (ValueError, TypeError):
            return None
        view = cls.parse({"status": status, "pool": pool, "node": node, "pair": pair, "sort": sort})
        return view if view.wanted() == text else None

    def key(self) -> str:
        return keys.fleet_view(hashlib.sha1(self.wanted().encode()).hexdigest()[:20])

    def echo(self) -> dict[str, Any]:
        """The view as the page sent it (what it shows above the table)."""
        out = asdict(self)
        out["order"] = "desc" if out.pop("desc") else "asc"
        return out


DEFAULT_VIEW = View()  # written every interval, so the first page of a new viewer is there at once


def pack(ids: list[str]) -> str:
    return "".join(node_id.ljust(ID_WIDTH) for node_id in ids)


def unpack(text: str) -> list[str]:
    return [text[i : i + ID_WIDTH].strip() for i in range(0, len(text), ID_WIDTH)]


@dataclass(frozen=True)
class Summary:
    """The worker's fleet summary as stored (empty when no worker has computed one). The pools'
    figures stay the JSON text the worker wrote: a frame passes them on as they are
    (``msgspec.Raw``), and only a view of one pool decodes them."""

    at_ms: int = 0
    totals: dict[str, Any] = field(default_factory=dict)
    pools_json: str = "[]"  # [{name, ready_nodes, ...}], admin pools first
    pool_names_json: str = "[]"
    minutes: list[list[int]] = field(default_factory=list)  # [minute since the epoch, jobs placed]

    @classmethod
    def decoded(cls, at_ms: Any, totals: Any, pools: Any = None, pool_names: Any = None, minutes: Any = None) -> Summary:
        return cls(
            at_ms=as_int(at_ms),
            totals=msgspec.json.decode(totals) if totals else {},
            pools_json=pools or "[]",
            pool_names_json=pool_names or "[]",
            minutes=msgspec.json.decode(minutes) if minutes else [],
        )

    @property
    def pools(self) -> list[dict[str, Any]]:
        return msgspec.json.decode(self.pools_json)  # type: ignore[no-any-return]

    def node_counts(self) -> dict[str, int]:
        """Nodes by status, every status present (0 before the first summary)."""
        return {status: 0 for status in STATUSES} | dict(self.totals.get("nodes") or {})


@dataclass(frozen=True)
class Live:
    """What the scripts keep counted, read as it is now (cheap: no node is read)."""

    now_ms: int
    counters: dict[str, int]
    sessions: int
    jobs_in_flight: int
    workers_alive: int


def _live(pipe: Any) -> None:
    pipe.time()
    pipe.hgetall(keys.metrics())
    pipe.zcard(keys.sessions())
    pipe.zcard(keys.deadlines())
    pipe.zrange(keys.workers(), 0, -1, withscores=True)


def _live_decoded(replies: list[Any]) -> Live:
    (seconds, micros), counters, sessions, in_flight, workers = replies
    now = int(seconds) * 1000 + int(micros) // 1000
    return Live(
        now_ms=now,
        counters={name: as_int(value) for name, value in counters.items()},
        sessions=int(sessions),
        jobs_in_flight=int(in_flight),
        workers_alive=sum(1 for _, until in workers if until > now),
    )


async def fleet_live() -> Live:
    """The scripts' counters, open sessions, jobs in flight, worker copies alive: one round trip."""
    pipe = store.async_client().pipeline(transaction=False)
    _live(pipe)
    return _live_decoded(await pipe.execute())


async def fleet_scrape() -> tuple[Summary, Live]:
    """What one ``/metrics`` scrape reads: the summary's totals and the live counts, one round trip."""
    pipe = store.async_client().pipeline(transaction=False)
    pipe.hmget(keys.fleet(), "at_ms", "totals")
    _live(pipe)
    replies = await pipe.execute()
    return Summary.decoded(*replies[0]), _live_decoded(replies[1:])


@dataclass(frozen=True)
class Page:
    """One page of a view: its node ids in order, how many rows the view has, whether the worker
    has written the view yet (a view asked for the first time is there within an interval)."""

    node_ids: list[str]
    rows: int
    built: bool


@dataclass(frozen=True)
class Dashboard:
    summary: Summary
    live: Live
    page: Page
    view: View
    samples: list[dict[str, Any]]


def sample_seconds(now_s: float) -> range:
    """The seconds of the load samples in the history window."""
    last = int(now_s) // HISTORY_SAMPLE_S * HISTORY_SAMPLE_S
    return range(last - HISTORY_WINDOW_S, last + 1, HISTORY_SAMPLE_S)


async def dashboard_read(view: View) -> Dashboard:
    """Everything one dashboard frame shows but its rows, in one round trip: the summary, the
    live counts, the load samples, and the ids of the page looked at. Asking for a view keeps
    the worker writing it."""
    client = store.async_client()
    width = ID_WIDTH * view.size
    pipe = client.pipeline(transaction=False)
    pipe.hmget(keys.fleet(), "at_ms", "totals", "pools", "pool_names", "minutes")
    _live(pipe)
    pipe.mget([keys.load_sample(second) for second in sample_seconds(time.time())])
    key = view.key()
    pipe.exists(key)
    pipe.strlen(key)
    if view.desc:  # the page counted from the end, read backwards
        pipe.getrange(key, -(view.page + 1) * width, -view.page * width - 1)
    else:
        pipe.getrange(key, view.page * width, (view.page + 1) * width - 1)
    if view != replace(DEFAULT_VIEW, desc=view.desc, page=view.page, size=view.size):
        pipe.zadd(keys.fleet_views_wanted(), {view.wanted(): int(time.time() * 1000)})
    replies = await pipe.execute()
    summary = Summary.decoded(*replies[0])
    live = _live_decoded(replies[1:6])
    samples = [json.loads(item) for item in replies[6] if item]
    exists, rows, chunk = replies[7], as_int(replies[8]) // ID_WIDTH, replies[9] or ""
    # Read backwards, the last page is short: GETRANGE clamps its start to the string's. Past the
    # end GETRANGE would clamp both ends (one byte): no page there.
    ids = [] if view.page * view.size >= rows else unpack(chunk)[:: -1 if view.desc else 1]
    return Dashboard(summary, live, Page(node_ids=ids, rows=rows, built=bool(exists)), view, samples)


