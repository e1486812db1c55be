"""Pure functions of the pool rules: no database, no Redis, no sockets.

- which directed pairs a node serves, and which services it has ready;
- which pools a node belongs to (admin pools and automatic ones);
- which pools, in order, serve a session (its route).

A session *needs* either one directed pair (``zh>en``, one-way) or both directions of a pair
(``en~zh``, two-way, languages sorted). Routes are keyed by that need, and by ``tenant|need``
for a tenant that has pools restricted to it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

Pair = tuple[str, str]

AUTO_PREFIX = "auto:"
AUTO_REQUIRED = frozenset({"asr", "nmt", "tts"})
AUTO_STRATEGY = "random"


@dataclass(frozen=True)
class NodeCaps:
    """What a node says it can do: languages per stage and the service types it has ready."""

    asr: frozenset[str] = frozenset()
    tts: frozenset[str] = frozenset()
    semantic: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()

    def to_json(self) -> dict[str, list[str]]:
        return {
            "asr": sorted(self.asr),
            "tts": sorted(self.tts),
            "semantic": sorted(self.semantic),
            "services": sorted(self.services),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Iterable[str]]) -> NodeCaps:
        return cls(
            asr=frozenset(data.get("asr", ())),
            tts=frozenset(data.get("tts", ())),
            semantic=frozenset(data.get("semantic", ())),
            services=frozenset(data.get("services", ())),
        )


@dataclass(frozen=True)
class PoolSpec:
    name: str
    priority: int
    strategy: str
    required_services: frozenset[str]
    pairs: frozenset[Pair]
    enabled: bool = True
    tenants: frozenset[str] = frozenset()  # empty: every tenant's sessions may use it

    @property
    def requires_tts(self) -> bool:
        return "tts" in self.required_services


@dataclass(frozen=True)
class PoolConfig:
    """The compiled configuration that live state is built from."""

    pools: tuple[PoolSpec, ...] = ()
    auto: bool = True
    slot_overrides: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "auto": self.auto,
                "slot_overrides": dict(sorted(self.slot_overrides.items())),
                "pools": [
                    {
                        "name": pool.name,
                        "enabled": pool.enabled,
                        "priority": pool.priority,
                        "strategy": pool.strategy,
                        "required_services": sorted(pool.required_services),
                        "pairs": sorted(pool.pairs),
                    }
                    | ({"tenants": sorted(pool.tenants)} if pool.tenants else {})
                    for pool in sorted(self.pools, key=lambda p: p.name)
                ],
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> PoolConfig:
        data = json.loads(raw)
        return cls(
            auto=bool(data["auto"]),
            slot_overrides={str(k): int(v) for k, v in data["slot_overrides"].items()},
            pools=tuple(
                PoolSpec(
                    name=item["name"],
                    enabled=item["enabled"],
                    priority=item["priority"],
                    strategy=item["strategy"],
                    required_services=frozenset(item["required_services"]),
                    pairs=frozenset((s, t) for s, t in item["pairs"]),
                    tenants=frozenset(item.get("tenants", ())),
                )
                for item in data["pools"]
            ),
        )

    @cached_property  # (frozen: computed once per configuration)
    def version(self) -> str:
        """Changes whenever anything that live state depends on changes."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @cached_property
    def enabled_pools(self) -> tuple[PoolSpec, ...]:
        return tuple(sorted((pool for pool in self.pools if pool.enabled), key=lambda p: (-p.priority, p.name)))


def ready_services(
    capability_by_type: Iterable[Mapping[str, object]] | None,
    installed_services: Iterable[Mapping[str, object]] | None,
) -> frozenset[str]:
    """A type is ready when its ``capability_by_type`` entry says so; without that list,
    when one of its ``installed_services`` is running."""
    if capability_by_type is not None:
        return frozenset(
            str(entry.get("type"))
            for entry in capability_by_type
            if entry.get("ready") is True and isinstance(entry.get("type"), str)
        )
    return frozenset(
        str(service.get("type"))
        for service in installed_services or ()
        if service.get("status") == "running" and isinstance(service.get("type"), str)
    )


def served_pairs(caps: NodeCaps, *, with_tts: bool) -> set[Pair]:
    """(s, t), s ≠ t: s recognised, t in its semantic languages (and synthesised, with tts)."""
    targets = caps.semantic & caps.tts if with_tts else caps.semantic
    return {(s, t) for s in caps.asr for t in targets if s != t}


def one_way_need(src: str, tgt: str) -> str:
    return f"{src}>{tgt}"


def two_way_need(lang_a: str, lang_b: str) -> str:
    a, b = sorted((lang_a, lang_b))
    return f"{a}~{b}"


def need_pairs(need: str) -> set[Pair]:
    if "~" in need:
        a, b = need.split("~", 1)
        return {(a, b), (b, a)}
    s, t = need.split(">", 1)
    return {(s, t)}


def auto_pool_name(need: str) -> str:
    """``auto:zh-en`` for a one-way need, ``auto:en~zh`` for a two-way one."""
    return AUTO_PREFIX + need.replace(">", "-")


def node_pools(config: PoolConfig, caps: NodeCaps) -> list[str]:
    """Every pool the node belongs to: enabled admin pools whose pairs it all serves and whose
    required services it has ready, then (when on) the automatic pools of what it serves."""
    with_tts = served_pairs(caps, with_tts=True)
    without_tts = served_pairs(caps, with_tts=False)
    names = [
        pool.name
        for pool in config.enabled_pools
        if pool.pairs
        and pool.required_services <= caps.services
        and pool.pairs <= (with_tts if pool.requires_tts else without_tts)
    ]
    if config.auto and AUTO_REQUIRED <= caps.services:
        names += [auto_pool_name(one_way_need(s, t)) for s, t in sorted(with_tts)]
        names += [
            auto_pool_name(two_way_need(s, t)) for s, t in sorted(with_tts) if s < t and (t, s) in with_tts
        ]
    return names


def _needs(pool: PoolSpec) -> list[str]:
    found = []
    for s, t in sorted(pool.pairs):
        found.append(one_way_need(s, t))
        if s < t and (t, s) in pool.pairs:
            found.append(two_way_need(s, t))
    return found


def routes(config: PoolConfig) -> dict[str, list[tuple[str, str]]]:
    """Need → the enabled admin pools that cover it, highest priority first (ties by name),
    each with its strategy. Automatic pools are not listed: they come last on every route
    while automatic pools are on (the dispatch script appends them).

    A pool restricted to tenants is on no shared route: each of its tenants gets routes of its
    own, ``tenant|need``, for every need its restricted pools cover (the shared pools of that
    need included, in the same order)."""
    table: dict[str, list[tuple[str, str]]] = {}
    restricted = {tenant for pool in config.enabled_pools for tenant in pool.tenants}
    for pool in config.enabled_pools:
        for need in _needs(pool):
            if not pool.tenants:
                table.setdefault(need, []).append((pool.name, pool.strategy))
    for tenant in sorted(restricted):
        own_needs = {need for pool in config.enabled_pools if tenant in pool.tenants for need in _needs(pool)}
        for pool in config.enabled_pools:
            if not pool.tenants or tenant in pool.tenants:
                for need in _needs(pool):
                    if need in own_needs:
                        table.setdefault(tenant_need(tenant, need), []).append((pool.name, pool.strategy))
    return table


def tenant_need(tenant: str, need: str) -> str:
    """The route-table key of a tenant's own route (only tenants with restricted pools have one)."""
    return f"{tenant}|{need}"


def route_for(config: PoolConfig, need: str, tenant: str = "") -> list[tuple[str, str]]:
    """The whole route of a need for a tenant's session, automatic pool included (without the
    sets of the tenant's own nodes, which the dispatch script adds when they have members)."""
    table = routes(config)
    route = list(table.get(tenant_need(tenant, need), table.get(need, [])))
    if config.auto:
        route.append((auto_pool_name(need), AUTO_STRATEGY))
    return route


def tenant_pools(names: list[str], tenant: str) -> list[str]:
    """The pool sets of a node whose token belongs to ``tenant``: ``pool@tenant`` for each of
    its pools, which only that tenant's routes visit. A node of no tenant keeps the names."""
    return [f"{name}@{tenant}" for name in names] if tenant else names
