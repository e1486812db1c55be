"""Jobs in a room on real server processes (docs/protocol.md, rooms): one job per language group
placed together, each ending to its group only (never the speaker, who gets the ui_events), a
transcript for the speaker's own language, a group with no node failing alone, an ordinary job
when nobody needs a translation, and a lost ending recovered for the whole group."""

from __future__ import annotations

import asyncio
import html
import re
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from dispatch import keys, selectors, store
from tests.clients import FakeBrowser, FakeNode
from tests.rooms import create, join, member
from tests.staff import fetch, login_cookie
from tests.traffic import is_ending, jobs_in_flight, used_slots

pytestmark = pytest.mark.e2e

SETTINGS = {"SCHEDULER_HEARTBEAT_INTERVAL_S": 1, "SCHEDULER_DISPATCH_WAIT_S": 1}


async def room_of(speaker: FakeBrowser, *listeners: tuple[FakeBrowser, dict[str, Any]]) -> str:
    """The speaker creates a room and the listeners join it (each with its join fields)."""
    ack, _ = await create(speaker)
    for browser, fields in listeners:
        await join(browser, ack["room_code"], **fields)
    await asyncio.sleep(0.3)  # the list changes reach everyone
    for browser in (speaker, *(browser for browser, _ in listeners)):
        await browser.silent(0.05)
    return str(ack["room_code"])


async def answer(node: FakeNode, count: int) -> list[dict[str, Any]]:
    """Take ``count`` jobs and answer each with a text naming its target language."""
    jobs = [await node.expect("job_assign") for _ in range(count)]
    for job in jobs:
        await node.send(node.result_for(job, text_asr="你好", text_translated=f"hello in {job['tgt_lang']}",
                                        tts_audio="T1RUUw=="))
    return jobs


def endings(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [frame for frame in frames if is_ending(frame)]


@pytest.mark.parametrize("spread", [False, True], ids=["one_process", "two_processes"])
async def test_zh_en_de_one_job_per_language_each_ending_to_its_group(stack, node_token, spread):
    server = stack(servers=2, **SETTINGS)
    at = (lambda index: server.ws(index % 2)) if spread else (lambda index: server.ws(0))
    node = await FakeNode.connect(server.ws(0), node_token)
    await node.register(langs=["zh", "en", "de", "fr", "ja"])
    speaker = await member(at(0), "zh", "en")
    english = await member(at(1), "ja", "en")  # no preferred_lang: its language is its tgt_lang, en
    german = await member(at(2), "en", "fr")
    code = await room_of(speaker, (english, {}), (german, {"preferred_lang": "de"}))

    await speaker.say()
    jobs = await answer(node, 2)
    assert sorted(job["tgt_lang"] for job in jobs) == ["de", "en"]
    for job in jobs:
        assert (job["session_id"], job["utterance_index"], job["src_lang"], job["attempt_id"]) == (
            speaker.session_id, 0, "zh", 1
        )
        assert job["trace_id"] == speaker.trace_id
    assert jobs[0]["audio"] == jobs[1]["audio"] and jobs[0]["job_id"] != jobs[1]["job_id"]
    by_lang = {job["tgt_lang"]: job for job in jobs}

    for browser, lang in ((english, "en"), (german, "de")):
        result = await browser.ending()
        assert result["type"] == "translation_result"
        assert result["job_id"] == by_lang[lang]["job_id"] and result["text_translated"] == f"hello in {lang}"
        assert result["session_id"] == speaker.session_id and result["utterance_index"] == 0
        assert result["tts_audio"] == "T1RUUw=="
    # the speaker gets the ui_events of both jobs and no ending
    heard = await speaker.silent(1.0)
    assert endings(heard) == []
    events = sorted((frame["job_id"], frame["event"]) for frame in heard if frame["type"] == "ui_event")
    assert events == sorted((job["job_id"], event) for job in jobs for event in ("DISPATCHED", "ASR_FINAL", "NMT_DONE"))
    for browser in (english, german):  # exactly once, and nothing of the other group
        assert endings(await browser.silent(0.3)) == []
    # the stories name the room and each job's group
    stories = await selectors.job_stories([job["job_id"] for job in jobs])
    assert {(story["room"], story["group"]) for story in stories} == {(code, "en"), (code, "de")}
    assert jobs_in_flight() == 0 and used_slots(node.node_id) == [0]


async def test_a_same_language_listener_gets_the_transcript_once(stack, node_token):
    server = stack(**SETTINGS)
    node = await FakeNode.connect(server.ws(), node_token)
    await node.register(langs=["zh", "en", "de"])
    speaker = await member(server.ws(), "zh", "en")
    english, german, chinese = (await member(server.ws(), "de", "en"), await member(server.ws(), "en", "de"),
                                await member(server.ws(), "en", "zh"))
    await room_of(speaker, (english, {}), (german, {}), (chinese, {"preferred_lang": "zh"}))
    await speaker.say()
    jobs = await answer(node, 2)
    transcript = await chinese.ending()
    assert transcript["type"] == "translation_result" and transcript["job_id"] in {job["job_id"] for job in jobs}
    assert (transcript["text_asr"], transcript["text_translated"], transcript["tts_audio"]) == ("你好", "你好", "")
    assert transcript["session_id"] == speaker.session_id
    assert endings(await chinese.silent(1.0)) == []  # the second job's result is not sent again
    assert (await english.ending())["text_translated"] == "hello in en"
    assert (await german.ending())["text_translated"] == "hello in de"


async def test_a_group_without_a_node_fails_alone(stack, node_token):
    server = stack(servers=2, **SETTINGS)
    node = await FakeNode.connect(server.ws(0), node_token)
    await node.register(langs=["zh", "en"])  # nobody serves zh → de
    speaker = await member(server.ws(0), "zh", "en")
    english, german = await member(server.ws(1), "de", "en"), await member(server.ws(1), "en", "de")
    await room_of(speaker, (english, {}), (german, {}))
    await speaker.say()
    [job] = await answer(node, 1)
    assert job["tgt_lang"] == "en"
    assert (await english.ending())["text_translated"] == "hello in en"
    error = await german.ending(timeout=5)  # after the dispatch wait (1 s)
    assert error["type"] == "error" and error["code"] == "NO_AVAILABLE_NODE" and error["utterance_index"] == 0
    assert error["job_id"] != job["job_id"]
    assert endings(await english.silent(0.5)) == [] and endings(await german.silent(0.1)) == []
    heard = await speaker.silent(0.5)
    assert endings(heard) == []
    failed = [f for f in heard if f["type"] == "ui_event" and f["event"] == "ERROR"]
    assert [(f["job_id"], f["error_code"]) for f in failed] == [(error["job_id"], "NO_AVAILABLE_NODE")]
    assert jobs_in_flight() == 0


async def test_a_waiting_group_job_goes_to_a_node_that_comes(stack, node_token):
    """A group's job that found no node waits like any job for the dispatch wait; a node that
    registers meanwhile takes it (attempt 1)."""
    server = stack(SCHEDULER_HEARTBEAT_INTERVAL_S=1, SCHEDULER_DISPATCH_WAIT_S=4)
    speaker = await member(server.ws(), "zh", "en")
    english = await member(server.ws(), "de", "en")
    await room_of(speaker, (english, {}))
    await speaker.say()
    await asyncio.sleep(0.5)
    node = await FakeNode.connect(server.ws(), node_token)
    await node.register(langs=["zh", "en"])
    [job] = await answer(node, 1)
    assert job["attempt_id"] == 1 and job["tgt_lang"] == "en"
    assert (await english.ending())["text_translated"] == "hello in en"


async def test_nobody_to_translate_for_is_an_ordinary_job(stack, node_token):
    """Alone in a room, the speaker's utterance is its own job (its result to itself); with only
    listeners of its own language too, who get its transcript."""
    server = stack(**SETTINGS)
    node = await FakeNode.connect(server.ws(), node_token)
    await node.register(langs=["zh", "en"])
    speaker = await member(server.ws(), "zh", "en")
    code = await room_of(speaker)
    await speaker.say()
    [job] = await answer(node, 1)
    assert job["tgt_lang"] == "en"
    assert (await speaker.ending())["text_translated"] == "hello in en"

    chinese = await member(server.ws(), "en", "zh")
    await join(chinese, code)
    await speaker.expect("room_members")
    await speaker.say(seq=2)
    [job] = await answer(node, 1)
    assert job["tgt_lang"] == "en" and job["utterance_index"] == 1
    assert (await speaker.ending())["text_translated"] == "hello in en"
    transcript = await chinese.ending()
    assert (transcript["text_translated"], transcript["tts_audio"], transcript["job_id"]) == ("你好", "", job["job_id"])


async def test_a_lost_ending_reaches_the_whole_group(stack, node_token):
    """The first job.ended of the node's process is lost: the speaker's recovery deadline reads
    the ending from the story and the group gets it, once."""
    settings = {"SCHEDULER_JOB_TIMEOUT_S": 1, "SCHEDULER_DISPATCH_WAIT_S": 1, "SCHEDULER_MAX_ATTEMPTS": 1}
    server = stack(servers=2, SCHEDULER_HEARTBEAT_INTERVAL_S=1, **settings,
                   server_env={"CHANNEL_LAYER_BACKEND": "tests.lossy_layer.LossyLayer", "LOSSY_DROP": "job.ended:1"})
    node = await FakeNode.connect(server.ws(1), node_token)
    await node.register(langs=["zh", "en"])
    speaker = await member(server.ws(0), "zh", "de")
    english = [await member(server.ws(index), "de", "en") for index in (0, 1)]
    await room_of(speaker, *((browser, {}) for browser in english))
    await speaker.say()
    [job] = await answer(node, 1)
    for browser in english:  # 1 + 1 × (1 + 1) + 5 = 8 s after placement
        result = await browser.ending(timeout=12)
        assert result["job_id"] == job["job_id"] and result["text_translated"] == "hello in en"
        assert result["tts_audio"] == ""  # rebuilt from the story, which keeps no audio
    assert int(store.decoded(store.sync_client().hget(keys.metrics(), "recovered")) or 0) == 1
    for browser in english:
        assert endings(await browser.silent(0.5)) == []


async def test_room_jobs_move_on_when_their_node_is_lost(stack, node_token):
    """Both jobs of an utterance sit on a node that disconnects: each moves to another node
    (attempt 2) and each group gets one ending."""
    server = stack(servers=2, SCHEDULER_HEARTBEAT_INTERVAL_S=1, SCHEDULER_DISPATCH_WAIT_S=3)
    first = await FakeNode.connect(server.ws(0), node_token)
    await first.register(langs=["zh", "en", "de"])
    speaker = await member(server.ws(1), "zh", "en")
    english, german = await member(server.ws(0), "de", "en"), await member(server.ws(1), "en", "de")
    await room_of(speaker, (english, {}), (german, {}))
    await speaker.say()
    held = [await first.expect("job_assign") for _ in range(2)]
    spare = await FakeNode.connect(server.ws(1), node_token)
    await spare.register(langs=["zh", "en", "de"])
    await first.close()
    moved = await answer(spare, 2)
    assert {job["job_id"] for job in moved} == {job["job_id"] for job in held}
    assert all(job["attempt_id"] == 2 for job in moved)
    for browser, lang in ((english, "en"), (german, "de")):
        assert (await browser.ending())["text_translated"] == f"hello in {lang}"
        assert endings(await browser.silent(0.5)) == []
    assert endings(await speaker.silent(0.1)) == []
    assert jobs_in_flight() == 0 and used_slots(spare.node_id) == [0]


async def test_staff_see_open_rooms_and_find_a_rooms_jobs(stack, node_token):
    """The dashboard lists open rooms (code, members, languages, jobs in the last minute), the job
    lookup finds a room's jobs by its code with each job's group, and /metrics counts rooms."""
    from dispatch.fleet import View
    from nodes.dashboard import dashboard_frame

    server = stack(**SETTINGS)
    staff = await sync_to_async(login_cookie)(staff=True)
    node = await FakeNode.connect(server.ws(), node_token)
    await node.register(langs=["zh", "en", "de"])
    speaker = await member(server.ws(), "zh", "en")
    english, german = await member(server.ws(), "de", "en"), await member(server.ws(), "en", "de")
    code = await room_of(speaker, (english, {}), (german, {"display_name": "Grete"}))
    await speaker.say()
    jobs = await answer(node, 2)
    await english.ending()
    await german.ending()

    rooms = (await dashboard_frame(View()))["rooms"]
    assert rooms["count"] == 1
    [shown] = rooms["shown"]
    assert (shown["code"], shown["members"], shown["languages"], shown["jobs_last_minute"]) == (
        code, 3, ["de", "en"], 2
    )
    page = await sync_to_async(fetch)(f"{server.http()}/dashboard/jobs/?room_code={code}", staff)
    assert page.status == 200
    rows = dict(re.findall(r'<tr class="job" data-job-id="([^"]+)" data-group="([^"]*)">', page.body))
    assert rows == {job["job_id"]: job["tgt_lang"] for job in jobs}
    detail = await sync_to_async(fetch)(f"{server.http()}/dashboard/jobs/{jobs[0]['job_id']}/", staff)
    assert f"{code}</a>, for the {jobs[0]['tgt_lang']} group" in html.unescape(detail.body)
    metrics = (await sync_to_async(fetch)(f"{server.http()}/metrics")).body
    assert "\nscheduler_rooms 1\n" in metrics and "\nscheduler_room_members 3\n" in metrics

    await english.close()
    await asyncio.sleep(0.5)
    metrics = (await sync_to_async(fetch)(f"{server.http()}/metrics")).body
    assert "\nscheduler_room_members 2\n" in metrics


async def test_a_two_way_speakers_jobs_keep_its_route(stack, node_token):
    """A two-way speaker's language is known only after recognition: every other member's
    language gets a job, each a two-way job of the speaker's pair with the group's tgt_lang."""
    server = stack(**SETTINGS)
    node = await FakeNode.connect(server.ws(), node_token)
    await node.register(langs=["zh", "en", "de"])
    speaker = await member(server.ws(), "auto", "en", lang_a="zh", lang_b="en")
    english, german = await member(server.ws(), "de", "en"), await member(server.ws(), "en", "de")
    await room_of(speaker, (english, {}), (german, {}))
    await speaker.say()
    jobs = await answer(node, 2)
    assert sorted(job["tgt_lang"] for job in jobs) == ["de", "en"]
    assert {(job["src_lang"], job["mode"], job["lang_a"], job["lang_b"]) for job in jobs} == {
        ("auto", "two_way_auto", "zh", "en")
    }
    stories = await selectors.job_stories([job["job_id"] for job in jobs])
    assert {story["need"] for story in stories} == {"en~zh"}
    assert (await english.ending())["text_translated"] == "hello in en"
    assert (await german.ending())["text_translated"] == "hello in de"


async def test_a_room_utterance_counts_once_against_the_speakers_inflight_limit(stack, node_token):
    """Its jobs hold one place until the last of them ends; utterances beyond the queue are
    dropped with RATE_LIMITED to the speaker, as for any session."""
    server = stack(SCHEDULER_SESSION_MAX_INFLIGHT=1, **SETTINGS)
    node = await FakeNode.connect(server.ws(), node_token)
    await node.register(langs=["zh", "en", "de"], slots=8)
    speaker = await member(server.ws(), "zh", "en")
    english, german = await member(server.ws(), "de", "en"), await member(server.ws(), "en", "de")
    await room_of(speaker, (english, {}), (german, {}))
    for index in range(3):
        await speaker.utterance(index)
    first = [await node.expect("job_assign") for _ in range(2)]
    dropped = await speaker.expect("error")
    assert (dropped["code"], dropped["utterance_index"]) == ("RATE_LIMITED", 2)
    assert [f for f in await node.silent(0.5) if f["type"] == "job_assign"] == []  # utterance 1 waits
    await node.send(node.result_for(first[0]))
    assert [f for f in await node.silent(0.5) if f["type"] == "job_assign"] == []  # until both end
    await node.send(node.result_for(first[1]))
    second = [await node.expect("job_assign") for _ in range(2)]
    assert {job["utterance_index"] for job in second} == {1}


async def test_three_people_over_two_processes_each_hear_the_others_in_their_own_language(stack, node_token):
    server = stack(servers=2, **SETTINGS)
    node = await FakeNode.connect(server.ws(1), node_token)
    await node.register(langs=["zh", "en", "de"], slots=8)
    people = {
        "zh": await member(server.ws(0), "zh", "en"),
        "en": await member(server.ws(1), "en", "zh"),
        "de": await member(server.ws(0), "de", "en"),
    }
    ack, _ = await create(people["zh"], preferred_lang="zh")
    for lang in ("en", "de"):
        await join(people[lang], ack["room_code"], preferred_lang=lang)
    await asyncio.sleep(0.3)
    for browser in people.values():
        await browser.silent(0.05)

    for lang, speaker in people.items():
        await speaker.say()
        jobs = await answer(node, 2)
        assert {(job["src_lang"], job["tgt_lang"]) for job in jobs} == {
            (lang, other) for other in people if other != lang
        }
        for other, listener in people.items():
            if other != lang:
                result = await listener.ending()
                assert (result["session_id"], result["text_translated"]) == (speaker.session_id, f"hello in {other}")
        assert endings(await speaker.silent(0.3)) == []
