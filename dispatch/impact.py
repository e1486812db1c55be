"""What a pool change would do, before it is saved: computed from the published configuration
and live state, changing neither. The admin's confirmation step and ``pools_import --dry-run``
print the same lines (:meth:`Impact.lines`).

- Nodes that would join or leave each pool whose definition changes. Every known node's
  capabilities are read in capped slices (``fleet_walk``), and membership is decided by the
  function that re-pools nodes (``pools.rules.node_pools``), once per distinct capability set:
  a fleet holds a handful of those, so the cost is the read, not the rules.
- Pairs whose route loses its last admin pool: left with the automatic pool only, or with no
  pool at all when automatic pools are off.
- Open sessions whose route would change or vanish (the session record holds its ``need``).

The digest covers both configurations and what the change does to nodes and routes, not the
count of open sessions (they come and go every second) nor of nodes read (a node that comes or
goes without touching a changed pool changes nothing the admin decides on): saving checks it, so a save applies
what was previewed, and a fleet that changed meanwhile brings the preview back.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field, replace

from django.conf import settings

from dispatch import keys, store
from dispatch.fleet_walk import IdCount, nodes_walk, sessions_walk
from pools.config import load_config
from pools.rules import AUTO_PREFIX, NodeCaps, PoolConfig, PoolSpec, node_pools, route_for, routes

LISTED = 50  # pairs and sessions lines listed one by one; the rest are counted


def published_config() -> PoolConfig:
    """The configuration live state is built from (the database's, before a first publish)."""
    raw = store.decoded(store.sync_client().hget(keys.config(), "json"))
    return PoolConfig.from_json(raw) if raw else load_config()


def config_with_pool(base: PoolConfig, spec: PoolSpec, replacing: str | None = None) -> PoolConfig:
    """``base`` with one pool added, or put in place of ``replacing`` (a changed or renamed one).
    Automatic pools on or off as this process's settings say: a save publishes with them."""
    kept = tuple(pool for pool in base.pools if pool.name not in {spec.name, replacing})
    return replace(base, pools=(*kept, spec), auto=settings.SCHEDULER_AUTO_PAIR_POOLS)


def config_without_pool(base: PoolConfig, name: str) -> PoolConfig:
    kept = tuple(pool for pool in base.pools if pool.name != name)
    return replace(base, pools=kept, auto=settings.SCHEDULER_AUTO_PAIR_POOLS)


def need_label(need: str) -> str:
    return need.replace(">", " → ").replace("~", " ↔ ")


@dataclass
class _Ids:
    """An :class:`IdCount` and an order-free digest of every id counted (not only those shown)."""

    ids: IdCount = field(default_factory=IdCount)
    digest: int = 0

    def add(self, item: str) -> None:
        self.ids.add(item)
        self.digest = (self.digest + int(hashlib.sha256(item.encode()).hexdigest()[:16], 16)) % 2**64


@dataclass(frozen=True)
class PoolDelta:
    """A pool whose definition changes, and the connected nodes that would join or leave it."""

    name: str
    change: str  # "added", "removed" or what changed ("enabled", "pairs", ...)
    join: IdCount
    leave: IdCount
    members_after: int


@dataclass(frozen=True)
class RouteDelta:
    """A need whose route (pools in order, automatic one included) would change."""

    need: str
    before: tuple[str, ...]
    after: tuple[str, ...]
    sessions: int = 0

    @property
    def loses_admin_pools(self) -> bool:
        def admin(route: tuple[str, ...]) -> bool:
            return any(not name.startswith(AUTO_PREFIX) for name in route)

        return admin(self.before) and not admin(self.after)


@dataclass(frozen=True)
class Impact:
    pools: list[PoolDelta]
    routes: list[RouteDelta]
    auto_before: bool
    auto_after: bool
    unknown_languages: dict[str, list[str]]  # language → pools naming it that no node reports
    nodes_read: int
    nodes_capped: bool
    sessions_read: int
    sessions_capped: bool
    sessions_unknown: int  # open sessions recorded before sessions kept their need
    digest: str

    @property
    def uncovered(self) -> list[RouteDelta]:
        return [route for route in self.routes if route.loses_admin_pools]

    @property
    def rerouted_sessions(self) -> list[RouteDelta]:
        return [route for route in self.routes if route.sessions]

    def lines(self) -> list[str]:
        """The impact as sentences, in a fixed order (the admin lists them; the command prints them)."""
        out = [_pool_line(delta, "at least " if self.nodes_capped else "") for delta in self.pools]
        out = out or ["No pool's definition changes."]
        if self.auto_before != self.auto_after:
            out.append(
                f"Automatic pools: {'on' if self.auto_before else 'off'} now, {'on' if self.auto_after else 'off'}"
                " after (this process's SCHEDULER_AUTO_PAIR_POOLS): every pair's route changes."
            )
        uncovered = self.uncovered
        for route in uncovered[:LISTED]:
            if route.after:
                out.append(f"Pair {need_label(route.need)}: no admin pool left; only {route.after[0]} serves it.")
            else:
                out.append(
                    f"Pair {need_label(route.need)}: no pool left (automatic pools are off): new sessions get "
                    "UNSUPPORTED_LANGUAGE_PAIR, and open sessions' jobs find no node."
                )
        if len(uncovered) > LISTED:
            out.append(f"{len(uncovered) - LISTED} more pairs lose their last admin pool.")
        rerouted = self.rerouted_sessions
        for route in rerouted[:LISTED]:
            after = ", ".join(route.after) or "no pool at all"
            least = "at least " if self.sessions_capped else ""
            out.append(
                f"Sessions {need_label(route.need)}: {least}{route.sessions} open; route "
                f"{', '.join(route.before) or 'none'} becomes {after}."
            )
        if len(rerouted) > LISTED:
            out.append(f"{sum(r.sessions for r in rerouted[LISTED:])} more open sessions of {len(rerouted) - LISTED} more pairs change route.")
        quiet = len(self.routes) - len(rerouted)
        if quiet:
            out.append(f"{quiet} pair(s) without an open session change route.")
        for language, pools in sorted(self.unknown_languages.items())[:LISTED]:
            out.append(
                f"Language {language} (pool {', '.join(pools)}): no connected node reports it; check the spelling."
            )
        capped = " (the first ones only: counts are at least these)" if self.nodes_capped else ""
        out.append(f"Read {self.nodes_read} node record(s){capped} and {self.sessions_read} open session(s).")
        if self.sessions_unknown:
            out.append(f"{self.sessions_unknown} open session(s) opened before sessions recorded their pair: not counted.")
        return out


def _pool_line(delta: PoolDelta, least: str) -> str:
    def nodes(ids: IdCount, verb: str) -> str:
        if not ids.count:
            return f"no node {verb}s"
        shown = ", ".join(ids.first) + (", …" if ids.count > len(ids.first) else "")
        return f"{least}{ids.count} node(s) {verb}: {shown}"

    return (
        f"Pool {delta.name} ({delta.change}): {nodes(delta.join, 'join')}; {nodes(delta.leave, 'leave')}; "
        f"{least}{delta.members_after} connected node(s) in it after."
    )


def _change(before: PoolSpec | None, after: PoolSpec | None) -> str | None:
    if before is None:
        return "added"
    if after is None:
        return "removed"
    if before == after:
        return None
    if before.enabled != after.enabled:
        return "enabled" if after.enabled else "disabled"
    what = [
        label
        for label, old, new in (
            ("pairs", before.pairs, after.pairs),
            ("required services", before.required_services, after.required_services),
            ("priority", before.priority, after.priority),
            ("strategy", before.strategy, after.strategy),
        )
        if old != new
    ]
    return "changed: " + ", ".join(what)


def impact(before: PoolConfig, after: PoolConfig) -> Impact:
    """What publishing ``after`` instead of ``before`` would do to live nodes, routes and open
    sessions (reads only)."""
    old = {pool.name: pool for pool in before.pools}
    new = {pool.name: pool for pool in after.pools}
    changes = {name: _change(old.get(name), new.get(name)) for name in sorted(set(old) | set(new))}
    changed = [name for name, change in changes.items() if change]
    # membership of the changed pools only, by the rules that re-pool nodes
    only_before = PoolConfig(pools=tuple(old[n] for n in changed if n in old), auto=False)
    only_after = PoolConfig(pools=tuple(new[n] for n in changed if n in new), auto=False)
    joins = {name: _Ids() for name in changed}
    leaves = {name: _Ids() for name in changed}
    members = Counter[str]()
    reported: set[str] = set()
    decided: dict[str, tuple[set[str], set[str]]] = {}
    walk = nodes_walk(("status", "caps"))
    for node_id, record in walk:
        raw = record["caps"]
        if record["status"] in (None, "offline") or not raw:
            continue
        if raw not in decided:
            caps = NodeCaps.from_json(json.loads(raw))
            reported |= caps.asr | caps.semantic | caps.tts
            decided[raw] = (set(node_pools(only_before, caps)), set(node_pools(only_after, caps)))
        was, will = decided[raw]
        for name in will - was:
            joins[name].add(node_id)
        for name in was - will:
            leaves[name].add(node_id)
        members.update(will)
    pools = [
        PoolDelta(name, str(changes[name]), joins[name].ids, leaves[name].ids, members[name]) for name in changed
    ]
    for delta in pools:
        delta.join.at_least = delta.leave.at_least = walk.capped
    route_deltas = _routes(before, after)
    sessions_read, sessions_capped, unknown = _count_sessions(route_deltas)
    unnamed: dict[str, list[str]] = {}
    for name in changed:
        if name in new and new[name].enabled:
            for language in sorted({code for pair in new[name].pairs for code in pair} - reported):
                unnamed.setdefault(language, []).append(name)
    digest = hashlib.sha256(
        json.dumps(
            [
                before.version,
                after.to_json(),
                [(d.name, d.change, d.join.count, joins[d.name].digest, d.leave.count, leaves[d.name].digest)
                 for d in pools],
                [(r.need, r.before, r.after) for r in route_deltas],
                walk.capped,
            ]
        ).encode()
    ).hexdigest()
    return Impact(
        pools=pools,
        routes=route_deltas,
        auto_before=before.auto,
        auto_after=after.auto,
        unknown_languages=unnamed,
        nodes_read=walk.read,
        nodes_capped=walk.capped,
        sessions_read=sessions_read,
        sessions_capped=sessions_capped,
        sessions_unknown=unknown,
        digest=digest,
    )


def _routes(before: PoolConfig, after: PoolConfig) -> list[RouteDelta]:
    """Every need an admin pool covers, before or after, whose route would change."""
    found = []
    for need in sorted(set(routes(before)) | set(routes(after))):
        old, new = route_for(before, need), route_for(after, need)
        if old != new:
            found.append(RouteDelta(need, tuple(name for name, _ in old), tuple(name for name, _ in new)))
    return found


def _count_sessions(route_deltas: list[RouteDelta]) -> tuple[int, bool, int]:
    """Count the open sessions of each need whose route changes (in place); returns how many
    sessions were read, whether the read was capped, and how many had no need recorded."""
    if not route_deltas:
        return 0, False, 0
    wanted = {route.need: index for index, route in enumerate(route_deltas)}
    counts = Counter[str]()
    unknown = 0
    walk = sessions_walk(("need", "channel"))
    for _, record in walk:
        need = record["need"]
        if not need:
            unknown += 1  # opened before sessions recorded their need
        elif need in wanted:
            counts[need] += 1
    for need, index in wanted.items():
        route_deltas[index] = replace(route_deltas[index], sessions=counts[need])
    return walk.read, walk.capped, unknown

