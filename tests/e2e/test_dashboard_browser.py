"""The dashboard in a real headless Chromium against real daphne, worker and Redis, with
scripted node and browser traffic: staff login, nodes with the slots and loads they reported,
exact job counts per node and pool, a drain button, a job lookup, and a refused non-staff user.
A screenshot of the dashboard is saved under test-artifacts/ (git-ignored)."""

from __future__ import annotations

import asyncio
import collections
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from tests.clients import FakeBrowser, FakeNode, eventually
from tests.servers import BASE_DIR
from tests.staff import PASSWORD, login_cookie, user_create

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = BASE_DIR / "test-artifacts"
WAIT_S = 20

ROWS_JS = """
return Array.from(document.querySelectorAll(arguments[0] + ' tbody tr')).map((tr) => {
  const row = {key: tr.dataset.nodeId || tr.dataset.pool};
  tr.querySelectorAll('td[data-col]').forEach((td) => { row[td.dataset.col] = td.textContent; });
  return row;
});
"""

ORDER_JS = "return Array.from(document.querySelectorAll('#nodes tbody tr')).map((tr) => tr.dataset.nodeId);"

SOCKET_CLOSE_JS = """
const done = arguments[arguments.length - 1];
const socket = new WebSocket('ws://' + location.host + '/ws/dashboard');
socket.onclose = (event) => done(event.code);
"""


@pytest.fixture
def chromium() -> Iterator[Any]:
    """A headless Chromium driven by chromium-driver (Debian's packages; nothing downloaded)."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip(
            "Chromium is not installed: install Debian's packages with "
            "`apt-get install chromium chromium-driver` (.ci/run does) to run the dashboard browser test"
        )
    pytest.importorskip("selenium", reason="selenium is in requirements-test.txt: run the tests with `make test`")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1500,1300", "--no-first-run", "--disable-extensions"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_script_timeout(WAIT_S)
    yield driver
    driver.quit()


class Page:
    """Selenium calls, run off the event loop (the fake nodes must keep answering meanwhile)."""

    def __init__(self, driver: Any, base: str) -> None:
        self.driver, self.base = driver, base

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def wait(self, condition: Callable[[Any], Any], what: str) -> Any:
        from selenium.webdriver.support.ui import WebDriverWait

        def run() -> Any:
            try:
                return WebDriverWait(self.driver, WAIT_S, poll_frequency=0.2).until(condition)
            except Exception as error:
                raise AssertionError(f"never saw {what}: {type(error).__name__}") from None

        return await self.call(run)

    async def go(self, path: str) -> None:
        await self.call(self.driver.get, self.base + path)

    async def login(self, username: str) -> None:
        from selenium.webdriver.common.by import By

        def run() -> None:
            self.driver.find_element(By.ID, "id_username").send_keys(username)
            self.driver.find_element(By.ID, "id_password").send_keys(PASSWORD)
            self.driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()

        await self.call(run)

    def rows(self, table: str) -> dict[str, dict[str, str]]:
        return {row["key"]: row for row in self.driver.execute_script(ROWS_JS, table)}

    def text(self, css: str) -> str:
        return str(self.driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", css))

    async def click_drain(self, node_id: str) -> None:
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.by import By

        def run() -> None:
            for _ in range(20):  # the table is drawn again each second
                try:
                    self.driver.find_element(By.CSS_SELECTOR, f'button.drain[data-node-id="{node_id}"]').click()
                    return
                except StaleElementReferenceException:
                    continue
            raise AssertionError("the drain button kept being redrawn")

        await self.call(run)


class ScriptedNode:
    """Answers every job at once, except attempt 1 of the utterances in ``fail`` (fails it)."""

    def __init__(self, node: FakeNode, fail: set[int]) -> None:
        self.node, self.fail = node, fail
        self.done: list[dict[str, Any]] = []
        self.failed: list[dict[str, Any]] = []
        self.controls: list[str] = []
        self.task = asyncio.ensure_future(self.serve())

    async def serve(self) -> None:
        while True:
            frame = await self.node.recv(timeout=3600)
            if frame["type"] == "node_control":
                self.controls.append(frame["command"])
            if frame["type"] != "job_assign":
                continue
            if frame["attempt_id"] == 1 and frame["utterance_index"] in self.fail:
                self.failed.append(frame)
                await self.node.send(self.node.result_for(frame, success=False, error={"code": "PROCESSING_ERROR", "message": "oom"}))
            else:
                self.done.append(frame)
                await self.node.send(self.node.result_for(frame, processing_time_ms=40 + 10 * len(self.done)))


async def run_jobs(browser: FakeBrowser, indexes: range) -> list[dict[str, Any]]:
    for index in indexes:
        await browser.utterance(index)
    endings = [await browser.ending() for _ in indexes]
    assert [ending["type"] for ending in endings] == ["translation_result"] * len(indexes)
    return endings


async def test_staff_watch_the_fleet_drain_a_node_and_look_up_a_job(stack, node_token, chromium):
    server = stack()
    staff, nobody = await sync_to_async(user_create)(staff=True), await sync_to_async(user_create)(staff=False)
    page = Page(chromium, server.http())

    # staff log in through the admin's form and land on the live dashboard, empty at first
    await page.go("/dashboard/")
    assert "/admin/login/" in chromium.current_url
    await page.login(staff)
    await page.wait(lambda d: d.current_url.endswith("/dashboard/"), "the dashboard after login")
    await page.wait(lambda d: page.text("#connection") == "live", "the socket live")
    await page.wait(lambda d: d.execute_script("return !document.getElementById('empty-state').hidden"), "the empty state")
    assert "node_token create" in page.text("#empty-state")

    # three nodes appear with the slots and the loads they reported
    loads = [
        {"cpu_percent": 11.0, "gpu_percent": 21.0, "mem_percent": 31.0, "running_jobs": 0},
        {"cpu_percent": 12.0, "gpu_percent": 22.0, "mem_percent": 32.0, "running_jobs": 1},
        {"cpu_percent": 13.0, "mem_percent": 33.0, "running_jobs": 2},
    ]
    specs = [(["zh", "en"], 4), (["zh", "en"], 2), (["fr", "de"], 3)]
    nodes = []
    for (langs, slots), load in zip(specs, loads, strict=True):
        node = await FakeNode.connect(server.ws(), node_token)
        await node.register(langs=langs, slots=slots)
        await node.heartbeat(resource_usage=load)
        nodes.append(ScriptedNode(node, fail={0}))
    ids = [n.node.node_id for n in nodes]

    def nodes_shown(_: Any) -> bool:
        rows = page.rows("#nodes")
        return all(
            node_id in rows and rows[node_id]["slots"] == f"0/{slots}" and rows[node_id]["cpu"] == str(int(load["cpu_percent"]))
            for node_id, (_, slots), load in zip(ids, specs, loads, strict=True)
        )

    await page.wait(nodes_shown, "three nodes with their slots and loads")
    rows = await page.call(page.rows, "#nodes")
    assert [rows[i]["status"] for i in ids] == ["ready"] * 3
    assert [rows[i]["gpu"] for i in ids] == ["21", "22", "—"]
    assert [rows[i]["mem"] for i in ids] == ["31", "32", "33"]
    assert [rows[i]["running_jobs"] for i in ids] == ["0", "1", "2"]
    assert rows[ids[2]]["pairs"] == "de→fr, fr→de"
    assert await page.call(page.text, "#total-nodes") == "3"

    # N jobs: the first zh→en one fails once and moves to the other zh-en node
    zh_en = await FakeBrowser.connect(server.ws())
    await zh_en.init("zh", "en")
    fr_de = await FakeBrowser.connect(server.ws())
    await fr_de.init("fr", "de")
    endings = await run_jobs(zh_en, range(6))
    nodes[2].fail = set()
    await run_jobs(fr_de, range(2))
    done = {node_id: len(n.done) for node_id, n in zip(ids, nodes, strict=True)}
    failed = {node_id: len(n.failed) for node_id, n in zip(ids, nodes, strict=True)}
    assert done[ids[0]] + done[ids[1]] == 6 and done[ids[2]] == 2
    assert failed[ids[0]] + failed[ids[1]] == 1 and failed[ids[2]] == 0

    def counts_shown(_: Any) -> bool:
        rows, pools = page.rows("#nodes"), page.rows("#pools")
        return (
            all(rows[i]["jobs_done"] == str(done[i]) and rows[i]["jobs_failed"] == str(failed[i]) for i in ids)
            and pools.get("auto:zh-en", {}).get("jobs_15m") == "6"
            and pools.get("auto:fr-de", {}).get("jobs_15m") == "2"
        )

    await page.wait(counts_shown, "jobs done per node and per pool")
    assert await page.call(page.text, "#total-jobs") == "8 / 0"
    pools = await page.call(page.rows, "#pools")
    assert pools["auto:zh-en"]["ready_nodes"] == "2" and pools["auto:zh-en"]["slots"] == "6/6"
    assert pools["auto:zh-en"]["p50_ms"] != "—" and pools["auto:zh-en"]["no_available"] == "0"

    # the node table is sorted by the server: by failures, most first, then narrowed to a pair
    failing = next(i for i in ids if failed[i])
    await page.call(chromium.execute_script, "document.querySelector('#nodes th[data-sort=failed]').click();")
    await page.wait(lambda d: d.execute_script(ORDER_JS)[:1] == [failing], "the node that failed first")
    assert await page.call(page.text, "#page-info") == "page 1 of 1"
    await page.call(chromium.execute_script, "const f = document.getElementById('filter-pair');"
                    "f.value = 'fr>de'; f.dispatchEvent(new Event('input'));")
    await page.wait(lambda d: d.execute_script(ORDER_JS) == [ids[2]], "only the node serving fr→de")
    await page.call(chromium.execute_script, "const f = document.getElementById('filter-pair');"
                    "f.value = ''; f.dispatchEvent(new Event('input'));")
    await page.wait(lambda d: len(d.execute_script(ORDER_JS)) == 3, "every node again")

    # the drain button: the node shows draining and gets no new job
    drained = ids[1]
    await page.click_drain(drained)
    await page.wait(lambda d: page.rows("#nodes")[drained]["status"] == "draining", "the node draining")
    await eventually(lambda: "drain" in nodes[1].controls)
    before = len(nodes[1].done)
    endings += await run_jobs(zh_en, range(6, 10))
    assert len(nodes[1].done) == before and len(nodes[1].failed) == failed[drained]
    done[ids[0]] += 4
    await page.wait(lambda d: page.rows("#nodes")[ids[0]]["jobs_done"] == str(done[ids[0]]), "the other node's new jobs")
    # pool figures come from the worker's fleet summary, computed once a second
    await page.wait(lambda d: page.rows("#pools")["auto:zh-en"]["jobs_15m"] == "10", "the pool's jobs in the next summary")
    await page.wait(lambda d: "2 ready · 0 registering · 1 draining" in page.text("#total-nodes-by-status"), "the totals")
    ARTIFACTS.mkdir(exist_ok=True)
    assert await page.call(chromium.save_screenshot, str(ARTIFACTS / "dashboard.png"))

    # the job lookup shows the failed-then-moved job's two attempts and nodes
    moved = next(ending for ending in endings if ending["utterance_index"] == 0)["job_id"]
    first_node = next(i for i, n in zip(ids, nodes, strict=True) if n.failed)
    second_node = next(i for i in ids[:2] if i != first_node)
    await page.go(f"/dashboard/jobs/{moved}/")
    attempts = await page.call(
        chromium.execute_script,
        "return Array.from(document.querySelectorAll('tr.attempt')).map((tr) => [tr.dataset.attempt, tr.dataset.pool, tr.dataset.node]);",
    )
    assert attempts == [["1", "auto:zh-en", first_node], ["2", "auto:zh-en", second_node]]
    story = await page.call(page.text, "article.story")
    assert f"attempt 1 failed on {first_node} with PROCESSING_ERROR" in story
    assert f"translation_result from {second_node} (attempt 2)" in story
    assert "zh → en" in story
    await page.call(chromium.save_screenshot, str(ARTIFACTS / "job-lookup.png"))
    await page.go(f"/dashboard/jobs/?trace_id={zh_en.trace_id}")
    listed = await page.call(
        chromium.execute_script, "return Array.from(document.querySelectorAll('tr.job')).map((tr) => tr.dataset.jobId);"
    )
    assert sorted(listed) == sorted(ending["job_id"] for ending in endings) and len(listed) == 10

    # a user who is not staff is refused: by the login form, by the page, and by the socket (4403)
    await page.call(chromium.delete_all_cookies)
    await page.go("/dashboard/")
    await page.login(nobody)
    await page.wait(lambda d: "for a staff account" in d.page_source, "the login refused")
    cookie = (await sync_to_async(login_cookie)(staff=False)).partition("=")[2]
    await page.call(chromium.add_cookie, {"name": "sessionid", "value": cookie, "path": "/"})
    await page.go("/dashboard/")
    await page.wait(lambda d: "not authorized to access this page" in d.page_source, "the page refused")
    assert "/admin/login/" in chromium.current_url
    assert await page.call(chromium.execute_async_script, SOCKET_CLOSE_JS) == 4403
    served = collections.Counter(job["utterance_index"] for n in nodes for job in n.done)
    assert sum(served.values()) == 12
    for n in nodes:
        n.task.cancel()
