"""The configuration as data: read from the database, and the pool file of import/export.

File format (``languages`` may stand instead of ``pairs``; export always prints pairs)::

    {"pools": [{"name": "zh-en-gpu", "enabled": true, "priority": 10, "strategy": "random",
                "required_services": ["asr", "nmt", "tts"], "pairs": [["zh", "en"]],
                "tenants": ["acme"]}]}

``tenants`` (absent or empty: everyone) restricts the pool to those tenants' sessions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from pools.models import LanguageRule, NodeSlotOverride, Pool, PoolImport, Strategy
from pools.rules import Pair, PoolConfig, PoolSpec
from pools.signals import announce_pools_changed
from pools.validation import language_code_problem

POOL_FIELDS = {"name", "enabled", "priority", "strategy", "required_services", "pairs", "languages", "tenants"}


def load_config() -> PoolConfig:
    """The compiled configuration as the database holds it now."""
    pools = tuple(pool_spec(pool, pool.pairs()) for pool in Pool.objects.prefetch_related("rules"))
    overrides = dict(NodeSlotOverride.objects.values_list("node_id", "slots"))
    return PoolConfig(pools=pools, auto=settings.SCHEDULER_AUTO_PAIR_POOLS, slot_overrides=overrides)


def pool_spec(pool: Pool, pairs: Iterable[Pair]) -> PoolSpec:
    """A pool as live state sees it, saved or not (its pairs given: an unsaved pool has no rules
    in the database yet)."""
    return PoolSpec(
        name=pool.name,
        enabled=pool.enabled,
        priority=pool.priority,
        strategy=pool.strategy,
        required_services=frozenset(pool.required_services),
        pairs=frozenset(pairs),
        tenants=frozenset(pool.tenants),
    )


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
            for side, code in zip(("source", "target"), pair, strict=True):
                _check_code(code, f"{where}, field 'pairs' ({side} of {pair!r})")
            rules.append(LanguageRule(src_lang=pair[0], tgt_lang=pair[1]))
    else:
        languages = entry["languages"]
        if not isinstance(languages, list) or not all(isinstance(x, str) for x in languages):
            raise PoolFileError(f"{where}: 'languages' must be a list of language codes")
        for code in languages:
            _check_code(code, f"{where}, field 'languages'")
        rules.append(LanguageRule(languages=",".join(languages)))
    try:
        pool.full_clean(validate_unique=False)
        for rule in rules:
            rule.full_clean(exclude=["pool"])
    except ValidationError as error:
        raise PoolFileError(f"{where}: {'; '.join(_messages(error))}") from None
    return pool, rules


def _check_code(code: str, where: str) -> None:
    problem = language_code_problem(code)
    if problem:
        raise PoolFileError(f"{where}: {problem}")


def _messages(error: ValidationError) -> list[str]:
    if hasattr(error, "error_dict"):
        return [f"{key}: {' '.join(msg for e in errs for msg in e.messages)}"
                for key, errs in error.error_dict.items()]
    return list(error.messages)


ParsedPools = list[tuple[Pool, list[LanguageRule]]]


def parse_pools(data: object) -> ParsedPools:
    """Check a pool file's content whole (PoolFileError naming the pool and the field); the pools
    and their rules, unsaved."""
    if not isinstance(data, dict) or not isinstance(data.get("pools"), list):
        raise PoolFileError('the file must be an object with a "pools" list')
    parsed = [_check_entry(index, entry) for index, entry in enumerate(data["pools"])]
    names = [pool.name for pool, _ in parsed]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise PoolFileError(f"pool name(s) given twice: {', '.join(duplicates)}")
    return parsed


def file_config(parsed: ParsedPools, base: PoolConfig) -> PoolConfig:
    """The configuration importing these pools would publish: the file's pools, the rest (slot
    overrides, automatic pools on or off as this process's settings say) from ``base``."""
    pools = tuple(pool_spec(pool, {pair for rule in rules for pair in rule.pairs()}) for pool, rules in parsed)
    return PoolConfig(pools=pools, auto=settings.SCHEDULER_AUTO_PAIR_POOLS, slot_overrides=base.slot_overrides)


def file_sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def import_pools(data: object, *, record: PoolImport | None = None) -> int:
    """Replace the whole pool configuration with the file's; returns the number of pools.
    ``record`` (a pools_import run: who, file, hash) is saved in the same transaction, with the
    pools the file added, removed or changed."""
    parsed = parse_pools(data)
    with transaction.atomic():
        if record is not None:
            _record_import(record, parsed)
        Pool.objects.all().delete()
        for pool, rules in parsed:
            pool.save()
            for rule in rules:
                rule.pool = pool
            LanguageRule.objects.bulk_create(rules)
        announce_pools_changed()
    return len(parsed)


def _record_import(record: PoolImport, parsed: ParsedPools) -> None:
    before = {spec.name: spec for spec in load_config().pools}
    after = {spec.name: spec for spec in file_config(parsed, PoolConfig()).pools}
    record.pools = len(parsed)
    record.added = sorted(set(after) - set(before))
    record.removed = sorted(set(before) - set(after))
    record.changed = sorted(name for name in set(before) & set(after) if before[name] != after[name])
    touched = [*record.added, *record.removed, *record.changed]
    record.touched = "," + ",".join(sorted(touched)) + "," if touched else ""
    record.save()


def parse_pool_file(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise PoolFileError(f"not valid JSON: {error}") from None
