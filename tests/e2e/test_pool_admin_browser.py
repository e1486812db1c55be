"""The pool admin in a real headless Chromium against real daphne, worker and Redis, with a
fleet serving traffic through automatic pools: an admin sees the automatic pools, adds a pool
with checkboxes and a suggested language, sees the nodes that would join before saving, saves,
and the next job goes to that pool; ``pools_import --dry-run`` prints the same impact and
changes nothing; a typo is refused before saving with a sentence that names the field.
Screenshots are saved under test-artifacts/ (git-ignored)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from dispatch import keys, selectors, store
from pools.config import export_pools
from pools.models import Pool
from tests.clients import FakeBrowser, FakeNode
from tests.e2e.test_dashboard_browser import ARTIFACTS, Page, ScriptedNode, chromium  # noqa: F401 (fixture)
from tests.pools.test_import_export import manage, write
from tests.staff import user_create

pytestmark = pytest.mark.e2e

IMPACT_JS = "return Array.from(document.querySelectorAll('#impact-lines li')).map((li) => li.textContent.trim());"
OPTIONS_JS = "return Array.from(document.querySelectorAll('#pool-languages option')).map((o) => o.value);"


async def first_pool(browser: FakeBrowser, index: int) -> str:
    """Say one utterance and return the pool its job was placed in (from the job's story)."""
    await browser.utterance(index, src_lang="ja", tgt_lang="ko")
    ending = await browser.ending()
    assert ending["type"] == "translation_result", ending
    story = await selectors.job_story(ending["job_id"])
    assert story is not None
    return str(json.loads(story["attempts"])[0]["pool"])


def published_version() -> str | None:
    return store.decoded(store.sync_client().hget(keys.config(), "version"))


async def test_an_admin_adds_a_pool_sees_who_joins_saves_and_a_job_goes_there(
    stack: Any, node_token: str, chromium: Any, tmp_path: Path  # noqa: F811 (fixture)
) -> None:
    server = stack()
    admin_name = await sync_to_async(user_create)(staff=True, superuser=True)
    page = Page(chromium, server.http())
    from selenium.webdriver.common.by import By

    # a fleet serving ja → ko and zh ↔ en through automatic pools only
    ja_ko = await FakeNode.connect(server.ws(), node_token)
    await ja_ko.register(langs=["ja", "ko"], slots=2)
    zh_en = await FakeNode.connect(server.ws(), node_token)
    await zh_en.register(langs=["zh", "en"], slots=3)
    nodes = [ScriptedNode(ja_ko, fail=set()), ScriptedNode(zh_en, fail=set())]
    browser = await FakeBrowser.connect(server.ws())
    assert (await browser.init("ja", "ko"))["type"] == "session_init_ack"
    assert await first_pool(browser, 0) == "auto:ja-ko"

    # the pool list says automatic pools carry the traffic, and lists them
    await page.go("/admin/pools/pool/")
    await page.login(admin_name)
    await page.wait(lambda d: page.text("#auto-pools-count") == "6", "six automatic pools counted")
    await page.call(lambda: chromium.find_element(By.ID, "auto-pools-link").click())
    await page.wait(lambda d: "/admin/pools/pool/auto/" in d.current_url, "the automatic pools page")
    rows = await page.call(page.rows, "#auto-pools")
    assert rows["auto:ja-ko"]["members"] == "1" and rows["auto:ja-ko"]["slots"] == "2 / 2"
    assert rows["auto:en~zh"]["pair"] == "en ↔ zh" and rows["auto:zh-en"]["slots"] == "3 / 3"

    # add a pool: tick services, take the languages from the suggestions, preview
    await page.go("/admin/pools/pool/add/")
    assert {"ja", "ko", "zh", "en"} <= set(await page.call(chromium.execute_script, OPTIONS_JS))

    def fill_in() -> None:
        chromium.find_element(By.ID, "id_name").send_keys("ja-ko-gpu")
        for service in ("asr", "nmt", "tts"):
            chromium.find_element(By.CSS_SELECTOR, f'input[name="required_services"][value="{service}"]').click()
        chromium.find_element(By.ID, "id_rules-0-src_lang").click()
        chromium.find_element(By.CSS_SELECTOR, 'button.language-suggestion[data-code="ja"]').click()
        chromium.find_element(By.ID, "id_rules-0-tgt_lang").click()
        chromium.find_element(By.CSS_SELECTOR, 'button.language-suggestion[data-code="ko"]').click()
        chromium.find_element(By.ID, "preview-change").click()

    await page.call(fill_in)
    await page.wait(lambda d: d.find_elements(By.ID, "impact-lines"), "the impact of the change")
    shown = await page.call(chromium.execute_script, IMPACT_JS)
    assert shown[0] == f"Pool ja-ko-gpu (added): 1 node(s) join: {ja_ko.node_id}; no node leaves; 1 connected node(s) in it after."
    assert "Sessions ja → ko: 1 open; route auto:ja-ko becomes ja-ko-gpu, auto:ja-ko." in shown
    assert zh_en.node_id not in " ".join(shown)
    assert await sync_to_async(Pool.objects.count)() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    await page.call(chromium.save_screenshot, str(ARTIFACTS / "pool-preview.png"))

    # the same change as a file: the dry run prints the same impact and changes nothing
    version = await sync_to_async(published_version)()
    after = {"pools": [{"name": "ja-ko-gpu", "required_services": ["asr", "nmt", "tts"], "pairs": [["ja", "ko"]]}]}
    dry = await sync_to_async(manage)("pools_import", "--dry-run", write(tmp_path, after))
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[:-1] == shown
    assert "nothing was changed" in dry.stdout.splitlines()[-1]
    assert await sync_to_async(published_version)() == version
    assert await sync_to_async(export_pools)() == {"pools": []}

    # save: the pool exists, the node is in it, and the next job goes there
    await page.call(lambda: chromium.find_element(By.CSS_SELECTOR, 'input[name="_save"]').click())
    await page.wait(lambda d: d.current_url.endswith("/admin/pools/pool/"), "the pool list after saving")
    assert await sync_to_async(selectors.pool_members)("ja-ko-gpu") == [ja_ko.node_id]
    assert await first_pool(browser, 1) == "ja-ko-gpu"

    # a typo is refused before saving, with a sentence that names the field
    await page.go("/admin/pools/pool/add/")

    def typo() -> None:
        chromium.find_element(By.ID, "id_name").send_keys("zh-en")
        chromium.find_element(By.ID, "id_rules-0-src_lang").send_keys("zh CN")
        chromium.find_element(By.ID, "id_rules-0-tgt_lang").send_keys("en")
        chromium.find_element(By.ID, "preview-change").click()

    await page.call(typo)
    await page.wait(lambda d: "Source language: 'zh CN' is not a language code" in page.text("#content-main"), "the typo refused")
    assert not await page.call(lambda: chromium.find_elements(By.ID, "impact-lines"))
    await page.call(chromium.save_screenshot, str(ARTIFACTS / "pool-typo.png"))
    assert await sync_to_async(Pool.objects.count)() == 1
    for node in nodes:
        node.task.cancel()
