"""The pure pool rules (docs/architecture.md, pools): which directed pairs a node
serves, which services it has ready, which pools it belongs to, and a session's route."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from pools.models import LanguageRule
from pools.rules import (
    NodeCaps,
    PoolConfig,
    PoolSpec,
    node_pools,
    ready_services,
    route_for,
    routes,
    served_pairs,
    two_way_need,
)
from tests.clients import LANGS14

FULL = frozenset({"asr", "nmt", "tts"})


def caps(
    langs: list[str],
    *,
    tts: list[str] | None = None,
    semantic: list[str] | None = None,
    services: frozenset[str] = FULL,
) -> NodeCaps:
    """A node like the real ones: the same list in all three stages unless told otherwise."""
    return NodeCaps(
        asr=frozenset(langs),
        tts=frozenset(langs if tts is None else tts),
        semantic=frozenset(langs if semantic is None else semantic),
        services=services,
    )


def pool(
    name: str,
    pairs: set[tuple[str, str]],
    *,
    priority: int = 10,
    strategy: str = "random",
    services: frozenset[str] = frozenset({"asr", "nmt"}),
    enabled: bool = True,
) -> PoolSpec:
    return PoolSpec(
        name=name,
        priority=priority,
        strategy=strategy,
        required_services=services,
        pairs=frozenset(pairs),
        enabled=enabled,
    )


def both_ways(a: str, b: str) -> set[tuple[str, str]]:
    return {(a, b), (b, a)}


def language_set(*codes: str) -> set[tuple[str, str]]:
    return LanguageRule(languages=",".join(codes)).pairs()


# --- served_pairs -----------------------------------------------------------------------------


def test_a_pair_is_recognised_source_and_semantic_target() -> None:
    node = NodeCaps(asr=frozenset({"zh"}), semantic=frozenset({"en", "ja"}), tts=frozenset())
    assert served_pairs(node, with_tts=False) == {("zh", "en"), ("zh", "ja")}


def test_the_target_must_be_a_semantic_language() -> None:
    node = NodeCaps(asr=frozenset({"zh"}), semantic=frozenset({"zh"}), tts=frozenset({"en"}))
    assert served_pairs(node, with_tts=False) == set()
    assert served_pairs(node, with_tts=True) == set()


def test_the_source_must_be_recognised() -> None:
    node = NodeCaps(asr=frozenset(), semantic=frozenset({"zh", "en"}), tts=frozenset({"zh", "en"}))
    assert served_pairs(node, with_tts=True) == set()


def test_with_tts_the_target_must_also_be_synthesised() -> None:
    node = caps(["zh", "en", "ja"], tts=["en"])
    assert served_pairs(node, with_tts=True) == {("zh", "en"), ("ja", "en")}
    assert served_pairs(node, with_tts=False) == {
        ("zh", "en"), ("zh", "ja"), ("en", "zh"), ("en", "ja"), ("ja", "zh"), ("ja", "en"),
    }


def test_a_language_is_never_paired_with_itself() -> None:
    assert served_pairs(caps(["zh"]), with_tts=False) == set()
    assert all(s != t for s, t in served_pairs(caps(LANGS14), with_tts=True))
    assert len(served_pairs(caps(LANGS14), with_tts=True)) == 14 * 13


# --- ready_services ---------------------------------------------------------------------------


def test_capability_by_type_ready_true_makes_a_service_ready() -> None:
    by_type = [
        {"type": "asr", "ready": True},
        {"type": "nmt", "ready": True, "devices": ["gpu"]},
        {"type": "tts", "ready": False, "reason": "model loading"},
    ]
    assert ready_services(by_type, None) == {"asr", "nmt"}


def test_capability_by_type_wins_over_installed_services() -> None:
    by_type = [{"type": "asr", "ready": True}, {"type": "tts", "ready": False}]
    installed = [
        {"service_id": "a", "type": "asr", "device": "gpu", "status": "running"},
        {"service_id": "t", "type": "tts", "device": "gpu", "status": "running"},
        {"service_id": "n", "type": "nmt", "device": "gpu", "status": "running"},
    ]
    assert ready_services(by_type, installed) == {"asr"}


def test_without_capability_by_type_a_running_installed_service_is_ready() -> None:
    installed = [
        {"service_id": "a", "type": "asr", "device": "gpu", "status": "running"},
        {"service_id": "n", "type": "nmt", "device": "gpu", "status": "stopped"},
        {"service_id": "t", "type": "tts", "device": "cpu", "status": "error"},
        {"service_id": "s", "type": "semantic", "device": "cpu", "status": "running"},
    ]
    assert ready_services(None, installed) == {"asr", "semantic"}


def test_nothing_reported_means_nothing_ready() -> None:
    assert ready_services(None, None) == frozenset()


# --- node_pools: admin pools ------------------------------------------------------------------


def test_a_node_joins_an_admin_pool_when_it_serves_every_pair() -> None:
    config = PoolConfig(pools=(pool("trio", language_set("zh", "en", "ja")),), auto=False)
    assert node_pools(config, caps(["zh", "en", "ja"])) == ["trio"]
    assert node_pools(config, caps(["zh", "en", "ja", "ko"])) == ["trio"]


def test_a_node_serving_only_some_pairs_of_a_pool_is_not_in_it() -> None:
    config = PoolConfig(pools=(pool("trio", language_set("zh", "en", "ja")),), auto=False)
    assert node_pools(config, caps(["zh", "en"])) == []
    one_way = NodeCaps(asr=frozenset({"zh"}), semantic=frozenset({"en"}), tts=frozenset({"en"}), services=FULL)
    config = PoolConfig(pools=(pool("zh-en-both", both_ways("zh", "en")),), auto=False)
    assert node_pools(config, one_way) == []


def test_a_node_needs_every_required_service_ready() -> None:
    config = PoolConfig(
        pools=(
            pool("with-tts", {("zh", "en")}, services=frozenset({"asr", "nmt", "tts"})),
            pool("with-semantic", {("zh", "en")}, services=frozenset({"asr", "semantic"})),
            pool("plain", {("zh", "en")}, services=frozenset({"asr", "nmt"})),
        ),
        auto=False,
    )
    no_tts = caps(["zh", "en"], services=frozenset({"asr", "nmt"}))
    assert node_pools(config, no_tts) == ["plain"]
    everything = caps(["zh", "en"], services=frozenset({"asr", "nmt", "tts", "semantic"}))
    assert sorted(node_pools(config, everything)) == ["plain", "with-semantic", "with-tts"]


def test_a_pool_requiring_tts_needs_the_targets_synthesised() -> None:
    config = PoolConfig(
        pools=(
            pool("tts", {("zh", "en")}, services=FULL),
            pool("text", {("zh", "en")}, services=frozenset({"asr", "nmt"})),
        ),
        auto=False,
    )
    assert node_pools(config, caps(["zh", "en"], tts=["zh"])) == ["text"]
    assert sorted(node_pools(config, caps(["zh", "en"], tts=["en"]))) == ["text", "tts"]


def test_disabled_pools_have_no_members() -> None:
    config = PoolConfig(
        pools=(pool("off", both_ways("zh", "en"), enabled=False), pool("on", both_ways("zh", "en"))),
        auto=False,
    )
    assert node_pools(config, caps(["zh", "en"])) == ["on"]


def test_a_node_is_in_admin_pools_and_automatic_pools_together() -> None:
    config = PoolConfig(
        pools=(pool("zh-en", {("zh", "en")}), pool("ja-ko", {("ja", "ko")})),
        auto=True,
    )
    assert sorted(node_pools(config, caps(["zh", "en"]))) == [
        "auto:en-zh", "auto:en~zh", "auto:zh-en", "zh-en",
    ]


# --- node_pools: automatic pools --------------------------------------------------------------


def test_automatic_pools_one_per_directed_pair_and_one_per_two_way_pair() -> None:
    names = node_pools(PoolConfig(auto=True), caps(["zh", "en", "ja"]))
    assert sorted(names) == sorted(
        [
            "auto:zh-en", "auto:en-zh", "auto:zh-ja", "auto:ja-zh", "auto:en-ja", "auto:ja-en",
            "auto:en~zh", "auto:ja~zh", "auto:en~ja",
        ]
    )
    assert len(names) == len(set(names))


def test_two_way_automatic_pool_names_are_sorted() -> None:
    assert two_way_need("zh", "en") == two_way_need("en", "zh") == "en~zh"
    names = node_pools(PoolConfig(auto=True), caps(["zh", "en"]))
    assert "auto:en~zh" in names
    assert "auto:zh~en" not in names


def test_a_two_way_automatic_pool_needs_both_directions_served() -> None:
    # en is synthesised, zh is not: zh→en only.
    names = node_pools(PoolConfig(auto=True), caps(["zh", "en"], tts=["en"]))
    assert names == ["auto:zh-en"]


def test_automatic_pools_need_asr_nmt_and_tts_ready() -> None:
    for missing in ("asr", "nmt", "tts"):
        node = caps(["zh", "en"], services=FULL - {missing})
        assert node_pools(PoolConfig(auto=True), node) == [], missing


def test_a_fourteen_language_node_is_in_182_plus_91_automatic_pools() -> None:
    names = node_pools(PoolConfig(auto=True), caps(LANGS14))
    one_way = [name for name in names if "~" not in name]
    two_way = [name for name in names if "~" in name]
    assert len(one_way) == 182
    assert len(two_way) == 91
    assert len(set(names)) == 273
    assert all(name.startswith("auto:") for name in names)


def test_automatic_pools_off_means_none() -> None:
    assert node_pools(PoolConfig(auto=False), caps(LANGS14)) == []
    config = PoolConfig(pools=(pool("zh-en", {("zh", "en")}),), auto=False)
    assert node_pools(config, caps(LANGS14)) == ["zh-en"]


# --- routes -----------------------------------------------------------------------------------


def test_route_is_highest_priority_first_ties_by_name() -> None:
    config = PoolConfig(
        pools=(
            pool("c", {("zh", "en")}, priority=10, strategy="sticky"),
            pool("b", {("zh", "en")}, priority=10),
            pool("a", {("zh", "en")}, priority=20, strategy="least_loaded"),
        ),
        auto=False,
    )
    assert route_for(config, "zh>en") == [("a", "least_loaded"), ("b", "random"), ("c", "sticky")]


def test_the_automatic_pool_comes_last_on_every_route() -> None:
    config = PoolConfig(pools=(pool("admin", {("zh", "en")}, priority=-5),), auto=True)
    assert route_for(config, "zh>en") == [("admin", "random"), ("auto:zh-en", "random")]
    assert route_for(config, "ja>ko") == [("auto:ja-ko", "random")]
    assert route_for(config, "en~zh") == [("auto:en~zh", "random")]


def test_without_automatic_pools_an_uncovered_need_has_no_route() -> None:
    config = PoolConfig(pools=(pool("admin", {("zh", "en")}),), auto=False)
    assert route_for(config, "en>zh") == []
    assert "en>zh" not in routes(config)


def test_disabled_pools_are_not_on_a_route() -> None:
    config = PoolConfig(
        pools=(pool("off", {("zh", "en")}, priority=99, enabled=False), pool("on", {("zh", "en")})),
        auto=False,
    )
    assert route_for(config, "zh>en") == [("on", "random")]


def test_a_language_set_expands_to_all_ordered_pairs() -> None:
    assert language_set("zh", "en", "ja") == {
        ("zh", "en"), ("en", "zh"), ("zh", "ja"), ("ja", "zh"), ("en", "ja"), ("ja", "en"),
    }
    config = PoolConfig(pools=(pool("trio", language_set("zh", "en", "ja")),), auto=False)
    table = routes(config)
    assert sorted(table) == ["en>ja", "en>zh", "en~ja", "en~zh", "ja>en", "ja>zh", "ja~zh", "zh>en", "zh>ja"]
    assert all(route == [("trio", "random")] for route in table.values())


def test_a_two_way_need_is_covered_only_by_pools_with_both_directions() -> None:
    config = PoolConfig(
        pools=(
            pool("zh-to-en", {("zh", "en")}, priority=30),
            pool("en-to-zh", {("en", "zh")}, priority=30),
            pool("both", both_ways("zh", "en"), priority=10),
        ),
        auto=False,
    )
    assert route_for(config, "en~zh") == [("both", "random")]
    assert route_for(config, "zh>en") == [("zh-to-en", "random"), ("both", "random")]
    assert "zh~en" not in routes(config)


# --- PoolConfig -------------------------------------------------------------------------------


def sample_config() -> PoolConfig:
    return PoolConfig(
        pools=(
            pool("zeta", both_ways("zh", "en"), priority=20, strategy="sticky", services=FULL),
            pool("alpha", language_set("ja", "ko", "en"), strategy="least_loaded", enabled=False),
        ),
        auto=True,
        slot_overrides={"node-0000abcd": 2, "node-12345678": 9},
    )


def test_config_json_round_trip() -> None:
    config = sample_config()
    restored = PoolConfig.from_json(config.to_json())
    assert restored.auto == config.auto
    assert dict(restored.slot_overrides) == dict(config.slot_overrides)
    assert {p.name: p for p in restored.pools} == {p.name: p for p in config.pools}
    assert restored.to_json() == config.to_json()
    assert restored.version == config.version


def test_version_does_not_depend_on_the_order_pools_are_listed() -> None:
    config = sample_config()
    reordered = dataclasses.replace(config, pools=tuple(reversed(config.pools)))
    assert reordered.version == config.version


def _change_pool(**changes: object) -> Callable[[PoolConfig], PoolConfig]:
    def apply(config: PoolConfig) -> PoolConfig:
        first, *rest = config.pools
        return dataclasses.replace(config, pools=(dataclasses.replace(first, **changes), *rest))

    return apply


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(_change_pool(name="zeta2"), id="name"),
        pytest.param(_change_pool(enabled=False), id="enabled"),
        pytest.param(_change_pool(priority=21), id="priority"),
        pytest.param(_change_pool(strategy="random"), id="strategy"),
        pytest.param(_change_pool(required_services=frozenset({"asr", "nmt"})), id="services"),
        pytest.param(_change_pool(pairs=frozenset({("zh", "en")})), id="pairs"),
        pytest.param(lambda c: dataclasses.replace(c, pools=c.pools[:1]), id="pool-removed"),
        pytest.param(
            lambda c: dataclasses.replace(c, pools=(*c.pools, pool("new", {("fr", "de")}))), id="pool-added"
        ),
        pytest.param(lambda c: dataclasses.replace(c, auto=False), id="auto"),
        pytest.param(
            lambda c: dataclasses.replace(c, slot_overrides={**c.slot_overrides, "node-0000abcd": 3}),
            id="slot-override-changed",
        ),
        pytest.param(
            lambda c: dataclasses.replace(c, slot_overrides={"node-0000abcd": 2}), id="slot-override-removed"
        ),
    ],
)
def test_version_changes_when_anything_changes(change: Callable[[PoolConfig], PoolConfig]) -> None:
    config = sample_config()
    changed = change(config)
    assert changed.to_json() != config.to_json()
    assert changed.version != config.version


# --- pools restricted to tenants ---------------------------------------------------------------


def test_a_restricted_pool_is_only_on_its_tenants_routes() -> None:
    zh_en = {("zh", "en")}
    acme_only = dataclasses.replace(pool("acme-only", zh_en, priority=20), tenants=frozenset({"acme"}))
    config = PoolConfig(pools=(acme_only, pool("shared", zh_en), pool("other", {("en", "de")})), auto=True)
    table = routes(config)
    assert table["zh>en"] == [("shared", "random")]
    assert table["acme|zh>en"] == [("acme-only", "random"), ("shared", "random")]
    assert "acme|en>de" not in table  # a need its restricted pools do not cover: the shared route
    assert route_for(config, "zh>en", "acme")[:2] == [("acme-only", "random"), ("shared", "random")]
    assert route_for(config, "zh>en", "beta") == [("shared", "random"), ("auto:zh-en", "random")]
    assert route_for(config, "en>de", "acme") == [("other", "random"), ("auto:en-de", "random")]
    assert set(PoolConfig.from_json(config.to_json()).pools) == set(config.pools)


def test_a_tenants_node_sits_in_its_tenants_pool_sets() -> None:
    from pools.rules import tenant_pools

    assert tenant_pools(["shared", "auto:zh-en"], "acme") == ["shared@acme", "auto:zh-en@acme"]
    assert tenant_pools(["shared"], "") == ["shared"]
