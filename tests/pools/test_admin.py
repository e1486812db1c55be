"""The pool admin: every committed change (pool, inline language rule, slot override) re-pools
live nodes in Redis before the response, and a pool's page shows its live members read-only."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import transaction
from django.test import Client

from dispatch import selectors
from pools.models import LanguageRule, NodeSlotOverride, Pool
from pools.signals import announce_pools_changed
from tests.pools.test_import_export import register, status

ADD_POOL = "/admin/pools/pool/add/"
ADD_OVERRIDE = "/admin/pools/nodeslotoverride/add/"


@pytest.fixture(autouse=True)
def quick_passwords(settings: Any) -> None:
    """The superuser's password is never checked here (the client logs in directly)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def no_auto(settings: Any) -> None:
    settings.SCHEDULER_AUTO_PAIR_POOLS = False


@pytest.fixture
def live(no_auto: None, transactional_db: None, published: str) -> str:
    """Live state in real Redis, automatic pools off, admin saves committed (on_commit fires)."""
    return published


def pool_form(
    name: str,
    rules: list[dict[str, str]],
    *,
    existing: list[LanguageRule] | None = None,
    enabled: bool = True,
    priority: int = 10,
    services: tuple[str, ...] = ("asr", "nmt"),
) -> dict[str, Any]:
    """The add/change form as the browser posts it (required services as ticked checkboxes),
    with the inline language rules."""
    existing = existing or []
    data: dict[str, Any] = {
        "name": name,
        "priority": str(priority),
        "strategy": "random",
        "required_services": list(services),
        "rules-TOTAL_FORMS": str(len(rules)),
        "rules-INITIAL_FORMS": str(len(existing)),
        "rules-MIN_NUM_FORMS": "0",
        "rules-MAX_NUM_FORMS": "1000",
        "_save": "Save",
    }
    if enabled:
        data["enabled"] = "on"
    for index, rule in enumerate(rules):
        data[f"rules-{index}-id"] = str(existing[index].pk) if index < len(existing) else ""
        for field in ("src_lang", "tgt_lang", "languages"):
            data[f"rules-{index}-{field}"] = rule.get(field, "")
    return data


def saved(response: Any) -> None:
    """The admin redirects after a save; on a form error, show what it said."""
    if response.status_code != 302:
        context = response.context or {}
        errors = [context.get("adminform") and context["adminform"].form.errors]
        errors += [formset.errors for formset in context.get("inline_admin_formsets", [])]
        pytest.fail(f"not saved ({response.status_code}): {errors}")


def add_pool(client: Client, name: str, rules: list[dict[str, str]], **kwargs: Any) -> Pool:
    saved(client.post(ADD_POOL, pool_form(name, rules, **kwargs)))
    return Pool.objects.get(name=name)


# --- pools ------------------------------------------------------------------------------------


def test_adding_a_pool_with_a_language_rule_re_pools_live_nodes(live: str, admin_client: Client) -> None:
    zh_en, ja_ko = register(["zh", "en"]), register(["ja", "ko"])
    assert status(zh_en) == "registering"

    pool = add_pool(admin_client, "zh-en-gpu", [{"languages": "zh,en"}], priority=20)

    assert pool.pairs() == {("zh", "en"), ("en", "zh")}
    assert pool.priority == 20
    assert selectors.pool_members("zh-en-gpu") == [zh_en]
    assert status(zh_en) == "ready"
    assert status(ja_ko) == "registering"


def test_a_pair_rule_added_in_the_admin(live: str, admin_client: Client) -> None:
    one_way = register(["ja", "ko"])
    add_pool(admin_client, "ja-ko", [{"src_lang": "ja", "tgt_lang": "ko"}])
    assert selectors.pool_members("ja-ko") == [one_way]


def test_a_pool_requiring_tts_in_the_admin_leaves_out_nodes_without_tts(
    live: str, admin_client: Client
) -> None:
    no_tts = register(["zh", "en"], services=("asr", "nmt"))
    full = register(["zh", "en"])
    add_pool(admin_client, "speech", [{"languages": "zh,en"}], services=("asr", "nmt", "tts"))
    assert selectors.pool_members("speech") == [full]
    assert status(no_tts) == "registering"


def test_the_change_page_shows_live_members_read_only(live: str, admin_client: Client) -> None:
    member, outsider = register(["zh", "en"]), register(["fr", "de"])
    pool = add_pool(admin_client, "zh-en", [{"languages": "zh,en"}])

    page = admin_client.get(f"/admin/pools/pool/{pool.pk}/change/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "live members" in html.lower()
    assert f"<code>{member}</code>" in html
    assert outsider not in html
    assert 'name="live_members"' not in html  # shown, not editable


def test_the_change_page_says_none_without_members(live: str, admin_client: Client) -> None:
    register(["fr", "de"])
    pool = add_pool(admin_client, "zh-en", [{"languages": "zh,en"}])
    html = admin_client.get(f"/admin/pools/pool/{pool.pk}/change/").content.decode()
    assert "<code>node-" not in html


def test_the_pool_list_shows_live_members(live: str, admin_client: Client) -> None:
    member = register(["zh", "en"])
    add_pool(admin_client, "zh-en", [{"languages": "zh,en"}])
    assert member in admin_client.get("/admin/pools/pool/").content.decode()


def test_a_big_pool_shows_its_count_and_a_bounded_few(live: str, admin_client: Client) -> None:
    members = {register(["zh", "en"]) for _ in range(55)}
    pool = add_pool(admin_client, "zh-en", [{"languages": "zh,en"}])

    html = admin_client.get(f"/admin/pools/pool/{pool.pk}/change/").content.decode()
    shown = set(re.findall(r"<code>(node-[0-9a-f]{8})</code>", html))
    assert len(shown) == 20 and shown <= members and "55 members:" in html and "and 35 more" in html

    preview = admin_client.get("/admin/pools/pool/preview/", {"src_lang": "zh", "tgt_lang": "en"}).content.decode()
    rows = set(re.findall(r'class="member eligible" data-node="(node-[0-9a-f]{8})"', preview))
    assert len(rows) == 50 and rows <= members, "a random 50 of the pool, as a pick samples"
    assert "55 ready members; a random 50 of them" in preview


def test_disabling_a_pool_in_the_admin_takes_its_nodes_out(live: str, admin_client: Client) -> None:
    node = register(["zh", "en"])
    pool = add_pool(admin_client, "zh-en", [{"languages": "zh,en"}])
    assert status(node) == "ready"

    saved(
        admin_client.post(
            f"/admin/pools/pool/{pool.pk}/change/",
            pool_form("zh-en", [{"languages": "zh,en"}], existing=list(pool.rules.all()), enabled=False),
        )
    )

    assert Pool.objects.get(pk=pool.pk).enabled is False
    assert selectors.pool_members("zh-en") == []
    assert status(node) == "registering"


def test_changing_only_a_language_rule_re_pools(live: str, admin_client: Client) -> None:
    zh_en, ja_ko = register(["zh", "en"]), register(["ja", "ko"])
    pool = add_pool(admin_client, "asia", [{"languages": "zh,en"}])
    assert selectors.pool_members("asia") == [zh_en]

    saved(
        admin_client.post(
            f"/admin/pools/pool/{pool.pk}/change/",
            pool_form("asia", [{"languages": "ja,ko"}], existing=list(pool.rules.all())),
        )
    )

    assert selectors.pool_members("asia") == [ja_ko]
    assert status(zh_en) == "registering"
    assert status(ja_ko) == "ready"


def test_deleting_a_pool_in_the_admin_takes_its_nodes_out(live: str, admin_client: Client) -> None:
    node = register(["zh", "en"])
    pool = add_pool(admin_client, "zh-en", [{"languages": "zh,en"}])

    response = admin_client.post(f"/admin/pools/pool/{pool.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not Pool.objects.exists()
    assert selectors.pool_members("zh-en") == []
    assert status(node) == "registering"


def test_deleting_pools_from_the_list_takes_their_nodes_out(live: str, admin_client: Client) -> None:
    node = register(["zh", "en"])
    first = add_pool(admin_client, "zh-en", [{"languages": "zh,en"}])
    second = add_pool(admin_client, "en-zh", [{"src_lang": "en", "tgt_lang": "zh"}])
    assert selectors.pool_members("en-zh") == [node]

    response = admin_client.post(
        "/admin/pools/pool/",
        {"action": "delete_selected", "_selected_action": [first.pk, second.pk], "post": "yes"},
    )

    assert response.status_code == 302
    assert not Pool.objects.exists()
    assert selectors.pool_members("zh-en") == selectors.pool_members("en-zh") == []
    assert status(node) == "registering"


def test_a_bad_language_rule_is_refused_and_changes_nothing(live: str, admin_client: Client) -> None:
    node = register(["zh", "en"])

    response = admin_client.post(ADD_POOL, pool_form("same", [{"src_lang": "zh", "tgt_lang": "zh"}]))

    assert response.status_code == 200
    assert "Source and target must differ." in response.content.decode()
    assert not Pool.objects.exists()
    assert selectors.pool_members("same") == []
    assert status(node) == "registering"


def test_an_unknown_service_is_refused(live: str, admin_client: Client) -> None:
    response = admin_client.post(ADD_POOL, pool_form("x", [{"languages": "zh,en"}], services=("gpu",)))
    assert response.status_code == 200
    assert "Unknown service type(s): gpu" in response.content.decode()
    assert not Pool.objects.exists()


# --- node slot overrides ----------------------------------------------------------------------


def test_a_slot_override_saved_in_the_admin_changes_the_nodes_slots(live: str, admin_client: Client) -> None:
    node = register(["zh", "en"], slots=4)
    other = register(["zh", "en"], slots=4)
    assert selectors.node_record(node)["slots"] == "4"

    saved(admin_client.post(ADD_OVERRIDE, {"node_id": node, "slots": "2", "_save": "Save"}))

    assert selectors.node_record(node)["slots"] == "2"
    assert selectors.node_record(other)["slots"] == "4"

    override = NodeSlotOverride.objects.get(node_id=node)
    saved(
        admin_client.post(
            f"/admin/pools/nodeslotoverride/{override.pk}/change/", {"node_id": node, "slots": "7", "_save": "Save"}
        )
    )
    assert selectors.node_record(node)["slots"] == "7"

    response = admin_client.post(f"/admin/pools/nodeslotoverride/{override.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert selectors.node_record(node)["slots"] == "4"  # what the node asked for


def test_a_slot_override_wins_over_what_a_node_asks_for_when_it_registers(
    live: str, admin_client: Client
) -> None:
    node = register(["zh", "en"], slots=4)
    saved(admin_client.post(ADD_OVERRIDE, {"node_id": node, "slots": "1", "_save": "Save"}))
    again = register(["zh", "en"], slots=8, node_id=node)
    assert again == node
    assert selectors.node_record(node)["slots"] == "1"


def test_a_slot_override_created_and_announced_changes_the_nodes_slots(live: str) -> None:
    node = register(["zh", "en"], slots=4)

    with transaction.atomic():
        NodeSlotOverride.objects.create(node_id=node, slots=3)
        announce_pools_changed()
        assert selectors.node_record(node)["slots"] == "4"  # not before the commit

    assert selectors.node_record(node)["slots"] == "3"


def test_a_bad_node_id_is_refused(live: str, admin_client: Client) -> None:
    response = admin_client.post(ADD_OVERRIDE, {"node_id": "gpu-1", "slots": "2", "_save": "Save"})
    assert response.status_code == 200
    assert not NodeSlotOverride.objects.exists()
