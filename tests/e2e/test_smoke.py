"""A real node and a real browser through real daphne and worker processes."""

import pytest

from tests.clients import FakeBrowser, FakeNode

pytestmark = pytest.mark.e2e


async def test_one_utterance_round_trip(stack, node_token):
    server = stack()
    node = await FakeNode.connect(server.ws(), node_token)
    ack = await node.register()
    assert ack["status"] == "ready"
    browser = await FakeBrowser.connect(server.ws())
    await browser.init("zh", "en")
    await browser.say()
    job = await node.expect("job_assign")
    assert job["session_id"] == browser.session_id and job["attempt_id"] == 1
    await node.send(node.result_for(job))
    result = await browser.ending()
    assert result["type"] == "translation_result"
    assert result["text_translated"] == f"translated 0 by {node.node_id}"
