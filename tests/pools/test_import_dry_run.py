"""``pools_import --dry-run`` prints what an import would do to the live fleet, the same lines the
admin's preview shows, and changes nothing; a real import is recorded with its file's hash; a
bad language code is refused naming the pool and the field."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from dispatch import keys, selectors, store
from pools.config import export_pools
from pools.models import Pool, PoolImport
from tests.pools.test_admin import ADD_POOL, pool_form
from tests.pools.test_admin_guide import impact_lines, preview, register
from tests.pools.test_import_export import import_file, status, write


@pytest.fixture(autouse=True)
def quick_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def live(transactional_db: None, published: str) -> str:
    return published


def dry_run(path: str) -> list[str]:
    out = io.StringIO()
    call_command("pools_import", path, "--dry-run", stdout=out)
    return out.getvalue().splitlines()


def live_fingerprint() -> tuple[Any, ...]:
    client = store.sync_client()
    return (
        store.decoded(client.hgetall(keys.config())),
        store.decoded(client.hgetall(keys.routes())),
        export_pools(),
        PoolImport.objects.count(),
    )


def test_a_dry_run_changes_nothing_and_prints_the_admins_impact(live: str, admin_client: Client, tmp_path: Path) -> None:
    zh_en, ja_ko = register(["zh", "en"]), register(["ja", "ko"])
    import_file(write(tmp_path, {"pools": [{"name": "zh-en", "languages": ["zh", "en"]}]}))
    held, members = live_fingerprint(), {node: selectors.node_record(node)["pools"] for node in (zh_en, ja_ko)}
    form = pool_form("ja-ko-gpu", [{"src_lang": "ja", "tgt_lang": "ko"}], services=("asr", "nmt", "tts"))
    admin_lines = impact_lines(preview(admin_client, form))
    after = {"pools": [*export_pools()["pools"], {"name": "ja-ko-gpu", "required_services": ["asr", "nmt", "tts"], "pairs": [["ja", "ko"]]}]}

    printed = dry_run(write(tmp_path, after, "after.json"))

    assert printed[:-1] == admin_lines
    assert printed[-1].endswith("nothing was changed")
    assert f"Pool ja-ko-gpu (added): 1 node(s) join: {ja_ko}; no node leaves; 1 connected node(s) in it after." in printed
    assert live_fingerprint() == held
    assert {node: selectors.node_record(node)["pools"] for node in (zh_en, ja_ko)} == members
    assert not Pool.objects.filter(name="ja-ko-gpu").exists()


def test_a_dry_run_names_the_nodes_leaving_and_the_pairs_left_to_automatic_pools(live: str, tmp_path: Path) -> None:
    node = register(["zh", "en"])
    import_file(write(tmp_path, {"pools": [{"name": "zh-en", "pairs": [["zh", "en"]]}]}))

    printed = dry_run(write(tmp_path, {"pools": []}, "empty.json"))

    assert printed[0] == f"Pool zh-en (removed): no node joins; 1 node(s) leave: {node}; 0 connected node(s) in it after."
    assert "Pair zh → en: no admin pool left; only auto:zh-en serves it." in printed
    assert status(node) == "ready" and selectors.pool_members("zh-en") == [node]


def test_an_import_is_recorded_with_its_files_hash(live: str, tmp_path: Path) -> None:
    import_file(write(tmp_path, {"pools": [{"name": "old", "pairs": [["fr", "de"]]}]}, "first.json"))
    path = write(tmp_path, {"pools": [{"name": "new", "pairs": [["zh", "en"]]}]}, "second.json")

    import_file(path)

    run = PoolImport.objects.first()
    assert run is not None
    assert run.file_sha256 == hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert (run.file_name, run.pools, run.added, run.removed, run.changed) == (path, 1, ["new"], ["old"], [])
    assert "@" in run.by
    assert PoolImport.objects.filter(touched__contains=PoolImport.touching("old")).count() == 2


@pytest.mark.parametrize(
    ("entry", "sentence"),
    [
        ({"name": "cn", "pairs": [["zh_CN", "en"]]}, "pool 'cn', field 'pairs' (source of ['zh_CN', 'en']): 'zh_CN' is not a language code"),
        ({"name": "two", "languages": ["en", "auto"]}, "pool 'two', field 'languages': 'auto' marks a two-way session"),
        ({"name": "long", "languages": ["en", "a" * 17]}, "pool 'long', field 'languages': 'aaaaaaaaaaaaaaaaa' is not a language code"),
    ],
)
def test_a_bad_language_code_names_the_pool_and_the_field(db: None, tmp_path: Path, entry: dict[str, Any], sentence: str) -> None:
    with pytest.raises(CommandError) as refused:
        dry_run(write(tmp_path, {"pools": [entry]}))
    assert sentence in str(refused.value)
    with pytest.raises(CommandError):
        import_file(write(tmp_path, {"pools": [entry]}))
    assert not Pool.objects.exists()


def test_the_admin_refuses_what_the_import_refuses(live: str, admin_client: Client) -> None:
    response = admin_client.post(ADD_POOL, {**pool_form("cn", [{"src_lang": "zh_CN", "tgt_lang": "en"}]), "_save": "Save"})
    assert response.status_code == 200
    assert "Source language: &#x27;zh_CN&#x27; is not a language code" in response.content.decode()
