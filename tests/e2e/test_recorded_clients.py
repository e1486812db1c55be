"""Replays what the real web client and the real node agent sent (tests/fixtures/*.jsonl, the
`in` frames), with our ids put in, and checks each gets every frame it waits for."""

from __future__ import annotations

import base64
import re

import pytest

from tests.clients import AUDIO, FakeBrowser, FakeNode, recorded, split_packets

pytestmark = pytest.mark.e2e

PLACEHOLDER = re.compile(r"^<(\d+) b64 chars>$")




async def first_job(nodes: list[FakeNode]) -> tuple[FakeNode, dict]:
    for _ in range(100):
        for node in nodes:
            try:
                return node, await node.expect("job_assign", timeout=0.1)
            except TimeoutError:
                pass
    raise TimeoutError("no node got the job")


def real_audio(b64_chars: int) -> str:
    """Whole framed packets of the real utterance, about as long as the recorded payload."""
    packets, out = split_packets(AUDIO), b""
    while len(base64.b64encode(out)) < b64_chars:
        out += packets[len(out) % len(packets)]
    return base64.b64encode(out).decode()


@pytest.mark.parametrize("transcript", ["transcript_chromium.jsonl", "transcript_e2e.jsonl", "transcript_reconnect.jsonl"])
async def test_real_clients_get_what_they_wait_for(stack, node_token, transcript):
    server = stack()
    frames = [f for f in recorded(transcript) if f["dir"] == "in"]
    nodes: dict[str, FakeNode] = {}  # recorded node id (or None for the first) → our socket
    ids: dict[str, str] = {}  # recorded id → ours (session, node and job ids)
    browser: FakeBrowser | None = None

    def ours(value):
        if isinstance(value, str):
            return ids.get(value, value)
        if isinstance(value, dict):
            return {k: ours(v) for k, v in value.items()}
        if isinstance(value, list):
            return [ours(v) for v in value]
        return value

    last_node: FakeNode | None = None
    for entry in frames:
        msg = entry["msg"]
        if entry["path"] == "/ws/node":
            if msg["type"] == "node_register":
                node = await FakeNode.connect(server.ws(), node_token)
                ack = await node.register(ours(msg))
                assert ack["message"] == "registered" and re.fullmatch(r"node-[0-9a-f]{8}", ack["node_id"])
                if msg["node_id"]:
                    assert ack["node_id"] == msg["node_id"]  # a returning node keeps its id
                recorded_ack = next(
                    f for f in recorded(transcript)
                    if f["dir"] == "out" and f["msg"]["type"] == "node_register_ack" and f["t"] >= entry["t"]
                )
                ids[recorded_ack["msg"]["node_id"]] = ack["node_id"]
                last_node = node
                nodes[ack["node_id"]] = node
                continue
            node = nodes.get(ours(msg.get("node_id")), last_node)
            if msg["type"] == "job_result":
                # the job went to a random ready node: that node answers as the recording did
                node, job = await first_job(list(nodes.values()))
                assert job["session_id"] == browser.session_id and job["attempt_id"] == 1
                assert job["is_manual_cut"] and not job["is_timeout_triggered"]
                ids[msg["job_id"]] = job["job_id"]
                msg = dict(msg, node_id=node.node_id)
            await node.send(ours(msg))
            assert [f for f in await node.silent(0.05) if f["type"] == "error"] == []
        else:
            if msg["type"] == "session_init":
                browser = await FakeBrowser.connect(server.ws())
                ack = await browser.init(**{k: v for k, v in msg.items() if k != "type"})
                assert ack["type"] == "session_init_ack" and ack["trace_id"] == msg["trace_id"]
                recorded_ack = next(
                    f for f in recorded(transcript)
                    if f["dir"] == "out" and f["msg"]["type"] == "session_init_ack" and f["t"] >= entry["t"]
                )
                ids[recorded_ack["msg"]["session_id"]] = browser.session_id
                continue
            if msg["type"] == "audio_chunk" and PLACEHOLDER.match(msg.get("payload") or ""):
                msg = dict(msg, payload=real_audio(int(PLACEHOLDER.match(msg["payload"]).group(1))))
            await browser.send(ours(msg))
    result = await browser.expect("translation_result")
    assert result["session_id"] == browser.session_id and result["utterance_index"] == 0
    assert result["text_translated"] == "hello 0" and result["service_timings"] == {"asr_ms": 10, "nmt_ms": 5, "tts_ms": 0}
    assert [f for f in browser.backlog if f["type"] == "error"] == []
