"""``pools_import`` and ``pools_export``: the pool file replaces the whole configuration or is
refused whole, export prints what import reads, and every committed import re-pools live nodes
before the command returns (docs/architecture.md)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from dispatch import keys, selectors, store
from dispatch.nodes import node_register
from dispatch.protocol import decode_node_frame
from pools.models import LanguageRule, Pool
from tests.clients import register_frame
from tests.servers import BASE_DIR, database_url

BEFORE = {
    "pools": [
        {
            "name": "old-high",
            "enabled": True,
            "priority": 20,
            "strategy": "sticky",
            "required_services": ["asr", "nmt"],
            "pairs": [["zh", "en"], ["en", "zh"]],
        },
        {"name": "old-set", "languages": ["fr", "de", "es"]},
    ]
}

FINE = {"name": "fine", "pairs": [["ja", "ko"]]}

BAD_FILES: list[Any] = [
    pytest.param("{not json", "JSON", id="not-json"),
    pytest.param('["pools"]', '"pools"', id="not-an-object"),
    pytest.param({"pools": [FINE, {"pairs": [["zh", "en"]]}]}, "'name'", id="missing-name"),
    pytest.param(
        {"pools": [FINE, {"name": "x", "strategy": "fastest", "pairs": [["zh", "en"]]}]},
        "strategy",
        id="unknown-strategy",
    ),
    pytest.param(
        {"pools": [FINE, {"name": "x", "required_services": ["asr", "gpu"], "pairs": [["zh", "en"]]}]},
        "gpu",
        id="unknown-service",
    ),
    pytest.param({"pools": [FINE, {"name": "x", "pairs": [["zh", "zh"]]}]}, "differ", id="same-src-tgt"),
    pytest.param(
        {"pools": [FINE, {"name": "x", "pairs": [["zh", "en"]], "languages": ["zh", "en"]}]},
        "exactly one of",
        id="pairs-and-languages",
    ),
    pytest.param(
        {"pools": [FINE, {"name": "fine", "pairs": [["zh", "en"]]}]}, "given twice: fine", id="duplicate-name"
    ),
    pytest.param(
        {"pools": [FINE, {"name": "x", "pairs": [["zh", "english!"]]}]}, "language code", id="bad-pair-code"
    ),
    pytest.param(
        {"pools": [FINE, {"name": "x", "languages": ["zh", "e"]}]}, "language code", id="bad-set-code"
    ),
    pytest.param(
        {"pools": [FINE, {"name": "auto:zh-en", "pairs": [["zh", "en"]]}]}, "auto:", id="automatic-name"
    ),
    pytest.param({"pools": [FINE, {"name": "x", "pairs": []}]}, "pairs", id="no-pairs"),
]
SUBPROCESS_CASES = {"not-json", "missing-name", "unknown-service", "duplicate-name"}


def write(tmp_path: Path, data: object, name: str = "pools.json") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def import_file(path: str) -> str:
    out = io.StringIO()
    call_command("pools_import", path, stdout=out)
    return out.getvalue()


def export() -> str:
    out = io.StringIO()
    call_command("pools_export", stdout=out)
    return out.getvalue()


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``manage.py`` in a process of its own, on the test database and this test's Redis keys."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env={
            **os.environ,
            "DATABASE_URL": database_url(),
            "SCHEDULER_REDIS_PREFIX": settings.SCHEDULER_REDIS_PREFIX,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def configuration() -> dict[str, Any]:
    """Every pool with its rules, as the database holds them."""
    return {
        pool.name: (
            pool.enabled,
            pool.priority,
            pool.strategy,
            list(pool.required_services),
            sorted((r.src_lang, r.tgt_lang, r.languages) for r in pool.rules.all()),
        )
        for pool in Pool.objects.prefetch_related("rules")
    }


# --- a good file ------------------------------------------------------------------------------


def test_a_good_file_replaces_the_whole_configuration(db: None, tmp_path: Path) -> None:
    import_file(write(tmp_path, BEFORE, "before.json"))
    assert set(Pool.objects.values_list("name", flat=True)) == {"old-high", "old-set"}

    output = import_file(
        write(
            tmp_path,
            {
                "pools": [
                    {"name": "new", "priority": 5, "strategy": "least_loaded",
                     "required_services": ["asr", "nmt", "tts"], "pairs": [["ja", "ko"]]},
                    {"name": "old-high", "enabled": False, "pairs": [["zh", "en"]]},
                ]
            },
        )
    )

    assert "imported 2 pool(s)" in output
    assert configuration() == {
        "new": (True, 5, "least_loaded", ["asr", "nmt", "tts"], [("ja", "ko", "")]),
        "old-high": (False, 10, "random", [], [("zh", "en", "")]),
    }
    assert LanguageRule.objects.count() == 2


def test_an_empty_pool_list_removes_every_pool(db: None, tmp_path: Path) -> None:
    import_file(write(tmp_path, BEFORE, "before.json"))
    import_file(write(tmp_path, {"pools": []}))
    assert Pool.objects.count() == 0
    assert LanguageRule.objects.count() == 0


def test_languages_expand_to_all_ordered_pairs(db: None, tmp_path: Path) -> None:
    import_file(write(tmp_path, {"pools": [{"name": "trio", "languages": ["zh", "en", "ja"]}]}))
    assert Pool.objects.get(name="trio").pairs() == {
        ("zh", "en"), ("en", "zh"), ("zh", "ja"), ("ja", "zh"), ("en", "ja"), ("ja", "en"),
    }
    exported = json.loads(export())["pools"][0]
    assert "languages" not in exported
    assert exported["pairs"] == [["en", "ja"], ["en", "zh"], ["ja", "en"], ["ja", "zh"], ["zh", "en"], ["zh", "ja"]]


# --- export -----------------------------------------------------------------------------------


def test_export_prints_the_documented_format(db: None, tmp_path: Path) -> None:
    import_file(write(tmp_path, BEFORE))

    printed = json.loads(export())

    assert printed == {
        "pools": [
            {
                "name": "old-high",
                "enabled": True,
                "priority": 20,
                "strategy": "sticky",
                "required_services": ["asr", "nmt"],
                "pairs": [["en", "zh"], ["zh", "en"]],
            },
            {
                "name": "old-set",
                "enabled": True,
                "priority": 10,
                "strategy": "random",
                "required_services": [],
                "pairs": [["de", "es"], ["de", "fr"], ["es", "de"], ["es", "fr"], ["fr", "de"], ["fr", "es"]],
            },
        ]
    }
    assert list(printed) == ["pools"]
    for entry in printed["pools"]:
        assert list(entry) == ["name", "enabled", "priority", "strategy", "required_services", "pairs"]


def test_export_of_no_pools(db: None) -> None:
    assert json.loads(export()) == {"pools": []}


def test_importing_an_export_changes_nothing(db: None, tmp_path: Path) -> None:
    import_file(write(tmp_path, BEFORE))
    first = export()
    held = configuration()

    import_file(write(tmp_path, first, "exported.json"))

    assert export() == first
    # the language set comes back as pairs: same pairs, same everything else
    assert {name: value[:4] for name, value in configuration().items()} == {
        name: value[:4] for name, value in held.items()
    }
    assert {p.name: p.pairs() for p in Pool.objects.all()} == {
        "old-high": {("zh", "en"), ("en", "zh")},
        "old-set": {("fr", "de"), ("de", "fr"), ("fr", "es"), ("es", "fr"), ("de", "es"), ("es", "de")},
    }


# --- a bad file is refused whole --------------------------------------------------------------


@pytest.mark.parametrize(("content", "problem"), BAD_FILES)
def test_a_bad_file_is_refused_whole(db: None, tmp_path: Path, content: object, problem: str) -> None:
    import_file(write(tmp_path, BEFORE, "before.json"))
    held, exported = configuration(), export()

    with pytest.raises(CommandError) as refused:
        import_file(write(tmp_path, content))

    assert problem in str(refused.value)
    assert configuration() == held
    assert export() == exported


def test_a_missing_file_is_refused(db: None, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="cannot read"):
        import_file(str(tmp_path / "nowhere.json"))


def test_a_refused_file_exits_1_with_the_problem_on_stderr(
    transactional_db: None, live_prefix: str, tmp_path: Path
) -> None:
    """In a process of its own, as an admin runs it (a few kinds of problem, run side by side
    to stay quick; the test above checks every kind's message)."""
    import_file(write(tmp_path, BEFORE, "before.json"))
    held, exported = configuration(), export()
    cases = [(param.id, *param.values) for param in BAD_FILES if param.id in SUBPROCESS_CASES]
    assert len(cases) == len(SUBPROCESS_CASES)
    runs = {
        case_id: subprocess.Popen(
            [sys.executable, "manage.py", "pools_import", write(tmp_path, content, f"{case_id}.json")],
            cwd=BASE_DIR,
            env={**os.environ, "DATABASE_URL": database_url(), "SCHEDULER_REDIS_PREFIX": live_prefix},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for case_id, content, _ in cases
    }
    outcomes = {case_id: (run.wait(timeout=60), *run.communicate()) for case_id, run in runs.items()}

    for case_id, _, problem in cases:
        status, stdout, stderr = outcomes[case_id]
        assert status == 1, (case_id, stdout, stderr)
        assert problem in stderr, (case_id, stderr)
        assert "nothing was changed" in stderr, (case_id, stderr)
        assert "Traceback" not in stderr, (case_id, stderr)
    assert configuration() == held
    assert export() == exported


def test_export_and_import_in_processes_of_their_own(
    transactional_db: None, live_prefix: str, tmp_path: Path
) -> None:
    imported = manage("pools_import", write(tmp_path, BEFORE))
    assert imported.returncode == 0, imported.stderr
    assert "imported 2 pool(s)" in imported.stdout

    exported = manage("pools_export")
    assert exported.returncode == 0, exported.stderr
    assert exported.stdout == export()
    assert [p["name"] for p in json.loads(exported.stdout)["pools"]] == ["old-high", "old-set"]


# --- every committed import re-pools live nodes ----------------------------------------------


@pytest.fixture
def no_auto(settings: Any) -> None:
    settings.SCHEDULER_AUTO_PAIR_POOLS = False


@pytest.fixture
def live(no_auto: None, transactional_db: None, published: str) -> str:
    """Live state in real Redis, automatic pools off, imports committed (on_commit fires)."""
    return published


def register(langs: list[str], **kwargs: Any) -> str:
    """A node registers through the service layer, as the node socket does."""
    frame = decode_node_frame(json.dumps(register_frame(langs, **kwargs)))
    registered = async_to_sync(node_register)(
        frame=frame, token="t", channel=f"test-channel-{uuid.uuid4().hex[:8]}", current_id=None
    )
    return registered.node_id


def status(node_id: str) -> str:
    return selectors.node_record(node_id)["status"]


def test_import_re_pools_live_nodes_before_it_returns(live: str, tmp_path: Path) -> None:
    zh_en, ja_ko = register(["zh", "en"]), register(["ja", "ko"])
    assert status(zh_en) == status(ja_ko) == "registering"

    import_file(write(tmp_path, {"pools": [{"name": "zh-en", "languages": ["zh", "en"]}]}))

    assert selectors.pool_members("zh-en") == [zh_en]
    assert status(zh_en) == "ready"
    assert status(ja_ko) == "registering"

    import_file(write(tmp_path, {"pools": [{"name": "asia", "pairs": [["ja", "ko"], ["ko", "ja"]]}]}))

    assert selectors.pool_members("zh-en") == []
    assert selectors.pool_members("asia") == [ja_ko]
    assert status(zh_en) == "registering"
    assert status(ja_ko) == "ready"


def test_a_disabled_pool_makes_no_node_ready(live: str, tmp_path: Path) -> None:
    node = register(["zh", "en"])
    import_file(write(tmp_path, {"pools": [{"name": "zh-en", "pairs": [["zh", "en"]]}]}))
    assert status(node) == "ready"

    import_file(write(tmp_path, {"pools": [{"name": "zh-en", "enabled": False, "pairs": [["zh", "en"]]}]}))

    assert selectors.pool_members("zh-en") == []
    assert status(node) == "registering"


def test_a_node_must_serve_every_pair_of_the_pool(live: str, tmp_path: Path) -> None:
    two, four = register(["zh", "en"]), register(["zh", "en", "ja", "ko"])
    import_file(write(tmp_path, {"pools": [{"name": "trio", "languages": ["zh", "en", "ja"]}]}))
    assert selectors.pool_members("trio") == [four]
    assert status(two) == "registering"
    assert status(four) == "ready"


def test_a_node_without_tts_ready_is_not_in_a_pool_requiring_tts(live: str, tmp_path: Path) -> None:
    no_tts = register(["zh", "en"], services=("asr", "nmt"))
    full = register(["zh", "en"], services=("asr", "nmt", "tts"))
    mute_en = register(["zh", "en"], services=("asr", "nmt", "tts"), tts=["zh"])

    import_file(
        write(
            tmp_path,
            {
                "pools": [
                    {"name": "speech", "required_services": ["asr", "nmt", "tts"], "pairs": [["zh", "en"]]},
                    {"name": "text", "required_services": ["asr", "nmt"], "pairs": [["zh", "en"]]},
                ]
            },
        )
    )

    assert selectors.pool_members("speech") == [full]
    assert selectors.pool_members("text") == sorted([no_tts, full, mute_en])
    assert json.loads(selectors.node_record(no_tts)["pools"]) == ["text"]


def test_a_registering_node_joins_the_published_pools(live: str, tmp_path: Path) -> None:
    import_file(write(tmp_path, {"pools": [{"name": "zh-en", "pairs": [["zh", "en"]]}]}))
    node = register(["zh", "en"])
    assert status(node) == "ready"
    assert selectors.pool_members("zh-en") == [node]
    assert register(["fr", "de"]) not in selectors.pool_members("zh-en")


def test_a_refused_file_leaves_live_state_untouched(live: str, tmp_path: Path) -> None:
    node = register(["zh", "en"])
    import_file(write(tmp_path, {"pools": [{"name": "zh-en", "pairs": [["zh", "en"]]}]}))
    client = store.sync_client()
    version = client.hget(keys.config(), "version")

    with pytest.raises(CommandError):
        import_file(write(tmp_path, {"pools": [{"name": "fr-de", "pairs": [["fr", "fr"]]}]}))

    assert client.hget(keys.config(), "version") == version
    assert selectors.pool_members("zh-en") == [node]
    assert status(node) == "ready"


def test_an_import_in_another_process_re_pools_before_it_exits(live: str, tmp_path: Path) -> None:
    node = register(["zh", "en"])
    assert status(node) == "registering"

    done = manage(
        "pools_import",
        write(tmp_path, {"pools": [{"name": "zh-en", "pairs": [["zh", "en"]]}]}),
        SCHEDULER_AUTO_PAIR_POOLS="0",
    )

    assert done.returncode == 0, done.stderr
    assert selectors.pool_members("zh-en") == [node]
    assert status(node) == "ready"


def test_with_automatic_pools_on_an_empty_configuration_still_pools_nodes(
    transactional_db: None, published: str, tmp_path: Path
) -> None:
    node = register(["zh", "en"])
    assert status(node) == "ready"
    assert selectors.pool_members("auto:zh-en") == [node]
    assert selectors.pool_members("auto:en~zh") == [node]
    version = store.sync_client().hget(keys.config(), "version")

    import_file(write(tmp_path, {"pools": [{"name": "zh-en", "pairs": [["zh", "en"]]}]}))

    assert store.sync_client().hget(keys.config(), "version") != version
    assert selectors.pool_members("zh-en") == [node]
    assert selectors.pool_members("auto:zh-en") == [node]
    assert set(json.loads(selectors.node_record(node)["pools"])) == {
        "zh-en", "auto:zh-en", "auto:en-zh", "auto:en~zh",
    }


def test_with_the_plain_db_fixture_re_pooling_waits_for_the_commit(
    no_auto: None, published: str, tmp_path: Path, django_capture_on_commit_callbacks: Any
) -> None:
    node = register(["zh", "en"])
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        import_file(write(tmp_path, {"pools": [{"name": "zh-en", "pairs": [["zh", "en"]]}]}))
        assert selectors.pool_members("zh-en") == []  # not committed yet
    assert len(callbacks) == 1
    assert selectors.pool_members("zh-en") == [node]
    assert status(node) == "ready"


def test_a_pools_tenants_go_through_the_file(db: None, tmp_path: Path) -> None:
    data = {"pools": [{"name": "acme-only", "pairs": [["zh", "en"]], "tenants": ["acme", "beta"]},
                      {"name": "shared", "pairs": [["zh", "en"]], "tenants": []}]}
    import_file(write(tmp_path, data))
    assert Pool.objects.get(name="acme-only").tenants == ["acme", "beta"]
    printed = {entry["name"]: entry for entry in json.loads(export())["pools"]}
    assert printed["acme-only"]["tenants"] == ["acme", "beta"]
    assert "tenants" not in printed["shared"]  # empty = everyone, left out
    bad = {"pools": [{"name": "x", "pairs": [["zh", "en"]], "tenants": ["no spaces"]}]}
    with pytest.raises(CommandError, match="tenants"):
        import_file(write(tmp_path, bad, "bad.json"))
