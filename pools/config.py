"""The configuration as data: read from the database, and the pool file of import/export.

File format (``languages`` may stand instead of ``pairs``; export always prints pairs)::

    {"pools": [{"name": "zh-en-gpu", "enabled": true, "priority": 10, "strategy": "random",
                "required_services": ["asr", "nmt", "tts"], "pairs": [["zh", "en"]],
                "tenants": ["acme"]}]}

``tenants`` (absent or empty: everyone) restricts the pool to those tenants' sessions.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from pools.models import LanguageRule, NodeSlotOverride, Pool, Strategy
from pools.rules import PoolConfig, PoolSpec
from pools.signals import announce_pools_changed

POOL_FIELDS = {"name", "enabled", "priority", "strategy", "required_services", "pairs", "languages", "tenants"}


def load_config() -> PoolConfig:
    """The compiled configuration as the database holds it now."""
    pools = tuple(
        PoolSpec(
            name=pool.name,
            enabled=pool.enabled,
            priority=pool.priority,
            strategy=pool.strategy,
            required_services=frozenset(pool.required_services),
            pairs=frozenset(pool.pairs()),
            tenants=frozenset(pool.tenants),
        )
        for pool in Pool.objects.prefetch_related("rules")
    )
    overrides = dict(NodeSlotOverride.objects.values_list("node_id", "slots"))
    return PoolConfig(pools=pools, auto=settings.SCHEDULER_AUTO_PAIR_POOLS, slot_overrides=overrides)


def export_pools() -> dict[str, Any]:
    return {
        "pools": [
            {
                "name": pool.name,
                "enabled": pool.enabled,
                "priority": pool.priority,
                "strategy": pool.strategy,
                "required_services": list(pool.required_services),
                "pairs": [list(pair) for pair in sorted(pool.pairs())],
            }
            | ({"tenants": sorted(pool.tenants)} if pool.tenants else {})
            for pool in Pool.objects.prefetch_related("rules").order_by("name")
        ]
    }


class PoolFileError(ValueError):
    """The file is refused whole; the message names the problem."""


def _check_entry(index: int, entry: object) -> tuple[Pool, list[LanguageRule]]:
    where = f"pools[{index}]"
    if not isinstance(entry, dict):
        raise PoolFileError(f"{where}: each pool must be an object")
    unknown = sorted(set(entry) - POOL_FIELDS)
    if unknown:
        raise PoolFileError(f"{where}: unknown field(s) {', '.join(unknown)}")
    name = entry.get("name")
    if not isinstance(name, str):
        raise PoolFileError(f"{where}: 'name' must be a string")
    where = f"pool {name!r}"
    enabled = entry.get("enabled", True)
    priority = entry.get("priority", 10)
    strategy = entry.get("strategy", Strategy.RANDOM)
    services = entry.get("required_services", [])
    tenants = entry.get("tenants", [])
    if not isinstance(enabled, bool):
        raise PoolFileError(f"{where}: 'enabled' must be true or false")
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise PoolFileError(f"{where}: 'priority' must be a whole number")
    if strategy not in Strategy.values:
        raise PoolFileError(f"{where}: 'strategy' must be one of {', '.join(Strategy.values)}")
    if ("pairs" in entry) == ("languages" in entry):
        raise PoolFileError(f"{where}: give exactly one of 'pairs' and 'languages'")
    pool = Pool(
        name=name, enabled=enabled, priority=priority, strategy=strategy, required_services=services,
        tenants=tenants,
    )
    rules: list[LanguageRule] = []
    if "pairs" in entry:
        pairs = entry["pairs"]
        if not isinstance(pairs, list) or not pairs:
            raise PoolFileError(f"{where}: 'pairs' must be a non-empty list of [source, target]")
        for pair in pairs:
            if not (
                isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)
            ):
                raise PoolFileError(f"{where}: {pair!r} is not a [source, target] pair")
            rules.append(LanguageRule(src_lang=pair[0], tgt_lang=pair[1]))
    else:
        languages = entry["languages"]
        if not isinstance(languages, list) or not all(isinstance(x, str) for x in languages):
            raise PoolFileError(f"{where}: 'languages' must be a list of language codes")
        rules.append(LanguageRule(languages=",".join(languages)))
    try:
        pool.full_clean(validate_unique=False)
        for rule in rules:
            rule.full_clean(exclude=["pool"])
    except ValidationError as error:
        raise PoolFileError(f"{where}: {'; '.join(_messages(error))}") from None
    return pool, rules


def _messages(error: ValidationError) -> list[str]:
    if hasattr(error, "error_dict"):
        return [f"{key}: {' '.join(msg for e in errs for msg in e.messages)}"
                for key, errs in error.error_dict.items()]
    return list(error.messages)


def import_pools(data: object) -> int:
    """Replace the whole pool configuration with the file's; returns the number of pools."""
    if not isinstance(data, dict) or not isinstance(data.get("pools"), list):
        raise PoolFileError('the file must be an object with a "pools" list')
    parsed = [_check_entry(index, entry) for index, entry in enumerate(data["pools"])]
    names = [pool.name for pool, _ in parsed]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise PoolFileError(f"pool name(s) given twice: {', '.join(duplicates)}")
    with transaction.atomic():
        Pool.objects.all().delete()
        for pool, rules in parsed:
            pool.save()
            for rule in rules:
                rule.pool = pool
            LanguageRule.objects.bulk_create(rules)
        announce_pools_changed()
    return len(parsed)


def parse_pool_file(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise PoolFileError(f"not valid JSON: {error}") from None
