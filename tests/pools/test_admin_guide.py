"""The pool admin guides: automatic pools counted and listed a page at a time, required services
as checkboxes, language fields checked as codes with suggestions from live nodes, the impact of
a change shown before it is saved (and a save that applies exactly what was previewed), each
pool's history, and the nodes connected with a token. Real Redis, the admin through Django's
test client."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.test import Client

from dispatch import admin_reads, fleet_walk, keys, selectors, store
from dispatch.fleet_walk import token_nodes
from dispatch.nodes import node_drain, node_offline, node_register
from dispatch.protocol import decode_node_frame
from dispatch.sessions import session_open
from nodes.models import NodeToken
from pools.models import Pool, PoolImport
from tests.clients import register_frame
from tests.pools.test_admin import ADD_POOL, pool_form, saved
from tests.pools.test_import_export import status, write


@pytest.fixture(autouse=True)
def quick_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def live(transactional_db: None, published: str) -> str:
    """Live state in real Redis, automatic pools on (the default), admin saves committed."""
    return published


@pytest.fixture
def no_auto(settings: Any) -> None:
    settings.SCHEDULER_AUTO_PAIR_POOLS = False


def register(langs: list[str], *, token: str = "t", channel: str | None = None, **kwargs: Any) -> str:
    frame = decode_node_frame(json.dumps(register_frame(langs, **kwargs)))
    channel = channel or f"test-channel-{uuid.uuid4().hex[:8]}"
    return async_to_sync(node_register)(frame=frame, token=token, channel=channel, current_id=None).node_id


def impact_lines(html: str) -> list[str]:
    block = re.search(r'<ul id="impact-lines">(.*?)</ul>', html, re.S)
    assert block, "no impact shown"
    return [re.sub(r"<[^>]+>", "", item).strip() for item in re.findall(r"<li>(.*?)</li>", block.group(1), re.S)]


def digest(html: str) -> str:
    found = re.search(r'name="impact_digest" value="([0-9a-f]+)"', html)
    assert found, "no digest in the form"
    return found.group(1)


def preview(client: Client, data: dict[str, Any], url: str = ADD_POOL) -> str:
    response = client.post(url, {**data, "_preview": "Preview the change"})
    assert response.status_code == 200
    return response.content.decode()


# --- automatic pools --------------------------------------------------------------------------


def test_the_pool_list_counts_the_automatic_pools_and_links_to_them(live: str, admin_client: Client) -> None:
    zh_en = register(["zh", "en"], slots=4)
    register(["ja", "ko"], slots=2)
    register(["ja", "ko"], services=("asr", "nmt"))  # no tts: in no automatic pool

    html = admin_client.get("/admin/pools/pool/").content.decode()

    count = re.search(r'<strong id="auto-pools-count">(\d+)</strong>', html)
    assert count and count.group(1) == "6"  # zh-en, en-zh, en~zh, ja-ko, ko-ja, ja~ko
    assert 'href="/admin/pools/pool/auto/"' in html

    page = admin_client.get("/admin/pools/pool/auto/").content.decode()
    rows = dict(re.findall(r'<tr data-pool="([^"]+)">.*?<td data-col="slots">([^<]*)</td>', page, re.S))
    assert set(rows) == {"auto:en-zh", "auto:en~zh", "auto:zh-en", "auto:ja-ko", "auto:ja~ko", "auto:ko-ja"}
    assert rows["auto:zh-en"] == "4 / 4" and rows["auto:ja-ko"] == "2 / 2"
    assert "zh → en" in page and "en ↔ zh" in page

    async_to_sync(node_offline)(node_id=zh_en, channel=selectors.node_record(zh_en)["channel"])
    assert admin_reads.auto_pools_count() == 3


def test_automatic_pools_are_paged_and_big_pools_say_at_least(
    live: str, admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    langs = [f"l{chr(97 + i)}" for i in range(10)]  # 90 one-way and 45 two-way pools
    nodes = [register(langs, slots=3) for _ in range(3)]
    monkeypatch.setattr(admin_reads, "MEMBERS_READ", 2)

    first, last = admin_reads.auto_pools_page(page=1), admin_reads.auto_pools_page(page=3)

    assert first.matching == 135 and first.pages == 3
    assert len(first.rows) == 50 and len(last.rows) == 35
    names = [row.name for row in first.rows + admin_reads.auto_pools_page(page=2).rows + last.rows]
    assert names == sorted(names) and len(set(names)) == 135
    row = first.rows[0]
    assert (row.members, row.members_read, row.partial, row.total) == (3, 2, True, 6)
    assert "≥ 6 / ≥ 6" in admin_client.get("/admin/pools/pool/auto/").content.decode()
    filtered = admin_reads.auto_pools_page(starting="la-")
    assert filtered.matching == 9 and all(r.name.startswith("auto:la-") for r in filtered.rows)

    async_to_sync(node_drain)(node_id=nodes[0], drain=True)
    assert admin_reads.auto_pools_count() == 135  # two members left in each
    for node_id in nodes[1:]:
        async_to_sync(node_drain)(node_id=node_id, drain=True)
    assert admin_reads.auto_pools_count() == 0
    async_to_sync(node_drain)(node_id=nodes[2], drain=False)
    assert admin_reads.auto_pools_count() == 135


def test_the_list_says_when_automatic_pools_are_off(no_auto: None, live: str, admin_client: Client) -> None:
    register(["zh", "en"])
    html = admin_client.get("/admin/pools/pool/").content.decode()
    assert "Automatic pools are off" in html
    assert admin_reads.auto_pools_count() == 0


# --- pick instead of type ---------------------------------------------------------------------


def test_the_form_offers_service_checkboxes_and_languages_live_nodes_report(live: str, admin_client: Client) -> None:
    register(["zh", "en"])
    register(["ja", "pt-BR"])

    html = admin_client.get(ADD_POOL).content.decode()

    for service in ("asr", "nmt", "tts", "semantic", "tone", "phonetic", "punctuation"):
        assert f'type="checkbox" name="required_services" value="{service}"' in html
    datalist = re.search(r'<datalist id="pool-languages">(.*?)</datalist>', html, re.S)
    assert datalist and re.findall(r'value="([^"]+)"', datalist.group(1)) == ["en", "ja", "pt-BR", "zh"]
    assert 'list="pool-languages"' in html
    assert 'name="_save"' not in html and 'name="_preview"' in html  # a preview comes first


@pytest.mark.parametrize(
    ("rule", "sentence"),
    [
        ({"src_lang": "zh CN", "tgt_lang": "en"}, "Source language: &#x27;zh CN&#x27; is not a language code"),
        ({"src_lang": "zh", "tgt_lang": "auto"}, "Target language: &#x27;auto&#x27; marks a two-way session"),
        ({"languages": "zh,en,e"}, "Languages: &#x27;e&#x27; is not a language code"),
    ],
)
def test_a_language_typo_is_refused_with_a_sentence_naming_the_field(
    live: str, admin_client: Client, rule: dict[str, str], sentence: str
) -> None:
    response = admin_client.post(ADD_POOL, {**pool_form("typo", [rule]), "_preview": "Preview"})
    html = response.content.decode()
    assert response.status_code == 200
    assert sentence in html
    assert 'id="impact-lines"' not in html  # refused before any preview
    assert "Give a source and a target" not in html  # the refusal alone, not a second complaint
    assert not Pool.objects.exists()


def test_services_are_saved_in_their_usual_order(live: str, admin_client: Client) -> None:
    saved(admin_client.post(ADD_POOL, pool_form("p", [{"languages": "zh,en"}], services=("tts", "asr"))))
    assert Pool.objects.get(name="p").required_services == ["asr", "tts"]


# --- the impact, before saving ----------------------------------------------------------------


def test_a_preview_names_the_nodes_that_join_and_saving_applies_it(live: str, admin_client: Client) -> None:
    joins, stays_out = register(["ja", "ko"]), register(["zh", "en"])
    async_to_sync(session_open)(trace_id="t-1", channel="test-session-ja", need="ja>ko")
    form = pool_form("ja-ko-gpu", [{"src_lang": "ja", "tgt_lang": "ko"}], services=("asr", "nmt", "tts"))

    html = preview(admin_client, form)

    assert not Pool.objects.exists()
    assert selectors.pool_members("ja-ko-gpu") == []
    lines = impact_lines(html)
    assert lines[0] == f"Pool ja-ko-gpu (added): 1 node(s) join: {joins}; no node leaves; 1 connected node(s) in it after."
    assert stays_out not in html
    assert "Sessions ja → ko: 1 open; route auto:ja-ko becomes ja-ko-gpu, auto:ja-ko." in lines

    saved(admin_client.post(ADD_POOL, {**form, "impact_digest": digest(html)}))

    assert selectors.pool_members("ja-ko-gpu") == [joins]


def test_a_save_after_the_fleet_changed_shows_the_preview_again(live: str, admin_client: Client) -> None:
    first = register(["ja", "ko"])
    form = pool_form("ja-ko", [{"languages": "ja,ko"}])
    old = digest(preview(admin_client, form))
    second = register(["ja", "ko"])

    response = admin_client.post(ADD_POOL, {**form, "impact_digest": old})

    html = response.content.decode()
    assert response.status_code == 200 and not Pool.objects.exists()
    assert "differs from the preview you saw" in html
    assert f"2 node(s) join: {', '.join(sorted([first, second]))}" in html
    saved(admin_client.post(ADD_POOL, {**form, "impact_digest": digest(html)}))
    assert selectors.pool_members("ja-ko") == sorted([first, second])


def test_a_save_after_the_form_changed_shows_the_preview_again(live: str, admin_client: Client) -> None:
    register(["ja", "ko"])
    form = pool_form("ja-ko", [{"languages": "ja,ko"}])
    seen = digest(preview(admin_client, form))
    response = admin_client.post(ADD_POOL, {**pool_form("ja-ko", [{"languages": "ja,ko"}], priority=30), "impact_digest": seen})
    assert response.status_code == 200 and not Pool.objects.exists()


def test_disabling_a_pool_names_the_pairs_and_sessions_left_without_a_pool(
    no_auto: None, live: str, admin_client: Client
) -> None:
    node = register(["zh", "en"])
    saved(admin_client.post(ADD_POOL, pool_form("zh-en", [{"languages": "zh,en"}])))
    async_to_sync(session_open)(trace_id="t-2", channel="test-session-zh", need="zh>en")
    pool = Pool.objects.get(name="zh-en")
    url = f"/admin/pools/pool/{pool.pk}/change/"

    lines = impact_lines(preview(admin_client, pool_form("zh-en", [{"languages": "zh,en"}], existing=list(pool.rules.all()), enabled=False), url))

    assert lines[0] == f"Pool zh-en (disabled): no node joins; 1 node(s) leave: {node}; 0 connected node(s) in it after."
    assert any(line.startswith("Pair zh → en: no pool left (automatic pools are off)") for line in lines)
    assert "Sessions zh → en: 1 open; route zh-en becomes no pool at all." in lines
    assert status(node) == "ready"  # nothing changed yet


def test_a_preview_past_the_walks_cap_says_at_least(
    live: str, admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(3):
        register(["ja", "ko"])
    monkeypatch.setattr(fleet_walk, "NODES_CAP", 2)
    lines = impact_lines(preview(admin_client, pool_form("ja-ko", [{"languages": "ja,ko"}])))
    assert lines[0].startswith("Pool ja-ko (added): at least 2 node(s) join: ")
    assert lines[0].endswith("; no node leaves; at least 2 connected node(s) in it after.")
    assert lines[-1] == "Read 2 node record(s) (the first ones only: counts are at least these) and 0 open session(s)."


def test_a_language_no_node_reports_is_pointed_out(live: str, admin_client: Client) -> None:
    register(["zh", "en"])
    lines = impact_lines(preview(admin_client, pool_form("cn", [{"src_lang": "zh-CN", "tgt_lang": "en"}])))
    assert "Language zh-CN (pool cn): no connected node reports it; check the spelling." in lines


def test_the_delete_page_shows_what_deleting_does(live: str, admin_client: Client) -> None:
    node = register(["zh", "en"])
    saved(admin_client.post(ADD_POOL, pool_form("zh-en", [{"languages": "zh,en"}])))
    pool = Pool.objects.get(name="zh-en")
    html = admin_client.get(f"/admin/pools/pool/{pool.pk}/delete/").content.decode()
    assert f"Pool zh-en (removed): no node joins; 1 node(s) leave: {node}" in html


# --- history ----------------------------------------------------------------------------------


def test_a_pools_history_holds_admin_saves_and_imports(live: str, admin_client: Client, tmp_path: Path) -> None:
    saved(admin_client.post(ADD_POOL, pool_form("zh-en", [{"languages": "zh,en"}])))
    path = write(tmp_path, {"pools": [{"name": "zh-en", "priority": 30, "languages": ["zh", "en"]}]})
    call_command("pools_import", path, stdout=None)
    run = PoolImport.objects.get()
    assert run.changed == ["zh-en"] and run.pools == 1 and len(run.file_sha256) == 64
    pool = Pool.objects.get(name="zh-en")

    html = admin_client.get(f"/admin/pools/pool/{pool.pk}/history/").content.decode()

    sources = re.findall(r'<tr class="history-entry" data-source="([^"]+)">', html)
    assert sources == ["pools_import", "admin"]
    assert run.file_sha256 in html and "admin" in html and "Added." in html


# --- node tokens ------------------------------------------------------------------------------


def test_a_tokens_page_shows_the_nodes_connected_with_it_now(live: str, admin_client: Client) -> None:
    token = NodeToken.objects.create(name="gpu-farm", token_hash=uuid.uuid4().hex)
    mine = sorted(register(["zh", "en"], token=str(token.pk)) for _ in range(3))
    register(["zh", "en"], token="another")
    gone = register(["zh", "en"], token=str(token.pk))
    async_to_sync(node_offline)(node_id=gone, channel=selectors.node_record(gone)["channel"])

    html = admin_client.get(f"/admin/nodes/nodetoken/{token.pk}/change/").content.decode()

    shown = re.search(r'<span id="token-nodes">(.*?)</span>', html, re.S)
    assert shown and shown.group(1).startswith("3: ")
    assert re.findall(r"<code>(node-[0-9a-f]{8})</code>", shown.group(1)) == mine
    capped = token_nodes(str(token.pk), cap=1)
    assert capped.at_least and capped.count <= 1


def test_sessions_record_their_need(live: str) -> None:
    session_id = async_to_sync(session_open)(trace_id="t-3", channel="test-session-x", need="en~zh")
    assert store.decoded(store.sync_client().hget(keys.session(session_id), "need")) == "en~zh"
