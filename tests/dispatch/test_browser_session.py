"""A browser session's own decisions, without a socket: what it refuses, how it queues its
utterances, how it ends and recovers its jobs. Live state is the real Redis; the socket is a
recorder of the frames the session sends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from dispatch import keys, nodes, protocol, selectors, store
from dispatch.browser_session import BrowserSession
from dispatch.protocol import ErrorCode, ProtocolError
from tests.clients import AUDIO_B64, register_frame

pytestmark = pytest.mark.django_db(transaction=True)


class Recorder:
    """The session's socket: keeps every frame sent, decoded."""

    channel_name = "test.session!recorder"

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    async def send_frame(self, frame: dict[str, Any]) -> None:
        self.frames.append(json.loads(protocol.encode(frame)))

    async def send_text(self, text: str) -> None:
        self.frames.append(json.loads(text))

    async def send_error(self, code: ErrorCode, message: str, **fields: Any) -> None:
        await self.send_frame(protocol.error_frame(code, message, **fields))

    def events(self, name: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == "ui_event" and f["event"] == name]

    def errors(self, code: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == "error" and f["code"] == code]


def frame(**fields: Any) -> Any:
    decoded = protocol.decode_session_frame(json.dumps(fields))
    assert not isinstance(decoded, protocol.Ignored)
    return decoded


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def node_up(slots: int = 4) -> str:
    registered = await nodes.node_register(
        frame=protocol.decode_node_frame(json.dumps(register_frame(["zh", "en"], slots=slots))),  # type: ignore[arg-type]
        token="open", channel="test.node!1", current_id=None,
    )
    return registered.node_id


async def opened(recorder: Recorder) -> BrowserSession:
    session = BrowserSession(recorder)
    await session.receive(frame(type="session_init", client_version="web-client-v1.0", platform="web", src_lang="zh", tgt_lang="en"))
    return session


def utterance(session: BrowserSession, index: int) -> Any:
    return frame(type="utterance", session_id=session.session_id, utterance_index=index, manual_cut=True,
                 src_lang="zh", tgt_lang="en", audio=AUDIO_B64, audio_format="opus", sample_rate=16000)


def used(node_id: str) -> int:
    return int(selectors.node_record(node_id).get("used", 0))


async def test_frames_before_init_for_another_session_or_a_same_language_pair_are_refused(published):
    session = BrowserSession(Recorder())
    with pytest.raises(ProtocolError) as refused:
        await session.receive(frame(type="client_heartbeat", session_id="s-00000000"))
    assert refused.value.code == ErrorCode.INVALID_MESSAGE
    with pytest.raises(ProtocolError, match="different languages"):
        await session.receive(frame(type="session_init", client_version="web-client-v1.0", platform="web", src_lang="en", tgt_lang="en"))
    await node_up()
    await session.receive(frame(type="session_init", client_version="web-client-v1.0", platform="web", src_lang="zh", tgt_lang="en"))
    assert session.session_id and await store.async_client().exists(keys.session(session.session_id))
    with pytest.raises(ProtocolError) as refused:
        await session.receive(frame(type="client_heartbeat", session_id="s-00000000"))
    assert refused.value.code == ErrorCode.INVALID_SESSION
    await session.end()


async def test_one_source_per_session_and_each_index_once(published):
    await node_up()
    session = await opened(Recorder())
    await session.receive(utterance(session, 0))
    with pytest.raises(ProtocolError, match="already used"):
        await session.receive(utterance(session, 0))
    with pytest.raises(ProtocolError, match="cannot mix"):
        await session.receive(frame(type="audio_chunk", session_id=session.session_id, seq=0, is_final=True))
    await session.end()


async def test_utterances_past_the_inflight_limit_wait_in_order_then_are_dropped(published, settings):
    settings.SCHEDULER_SESSION_MAX_INFLIGHT = 1
    node_id = await node_up()
    recorder = Recorder()
    session = await opened(recorder)
    for index in range(3):
        await session.receive(utterance(session, index))
    await until(lambda: len(recorder.events("DISPATCHED")) == 1)
    assert [f["utterance_index"] for f in recorder.errors("RATE_LIMITED")] == [2]  # 1 waits, 2 is dropped
    assert [cut.utterance_index for cut in session.waiting] == [1] and used(node_id) == 1
    (first,) = recorder.events("DISPATCHED")
    await session.job_ended(first["job_id"], [json.dumps({"type": "translation_result", "utterance_index": 0})])
    await until(lambda: len(recorder.events("DISPATCHED")) == 2)
    assert recorder.events("DISPATCHED")[1]["utterance_index"] == 1 and not session.waiting
    await session.end()


async def test_a_job_whose_ending_never_came_is_ended_from_its_story(published):
    node_id = await node_up()
    recorder = Recorder()
    session = await opened(recorder)
    await session.receive(utterance(session, 0))
    await until(lambda: len(recorder.events("DISPATCHED")) == 1)
    job_id = recorder.events("DISPATCHED")[0]["job_id"]
    await session.recover(job_id)  # as its deadline would, with no ending received
    assert [f["job_id"] for f in recorder.errors("JOB_TIMEOUT")] == [job_id]
    assert not session.jobs and not session.inflight and used(node_id) == 0
    await session.job_ended(job_id, [json.dumps({"type": "translation_result"})])  # too late: dropped
    assert not [f for f in recorder.frames if f["type"] == "translation_result"]
    await session.end()


async def test_ending_the_session_cancels_its_jobs_on_their_nodes(published):
    node_id = await node_up()
    recorder = Recorder()
    session = await opened(recorder)
    session_id = session.session_id
    await session.receive(utterance(session, 0))
    await until(lambda: len(recorder.events("DISPATCHED")) == 1)
    job_id = recorder.events("DISPATCHED")[0]["job_id"]
    await session.end()
    assert session.session_id is None and not session.jobs and used(node_id) == 0
    story = await selectors.job_story(job_id)
    assert story is not None and json.loads(story["ending"]) == {"kind": "cancelled", "reason": "session_closed"}
    assert not await store.async_client().zscore(keys.sessions(), session_id or "")
