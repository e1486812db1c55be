"""The dispatch path keeps the hot-path rules of docs/architecture.md: no in-process lock, no database query per job."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from channels.testing import WebsocketCommunicator
from django.db.backends.base.base import BaseDatabaseWrapper

from schedulerproj.asgi import application
from tests.clients import AUDIO_B64, register_frame

ROOT = Path(__file__).resolve().parents[2]
APPS = ("dispatch", "nodes", "pools", "tenants", "schedulerproj")
LOCKS = {
    ("asyncio", "Lock"), ("asyncio", "Semaphore"), ("asyncio", "Condition"),
    ("threading", "Lock"), ("threading", "RLock"), ("threading", "Semaphore"), ("threading", "Condition"),
    ("multiprocessing", "Lock"), ("multiprocessing", "RLock"),
}


def lock_uses(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in LOCKS:
                found.append(f"{path}:{node.lineno} {node.value.id}.{node.attr}")
        if isinstance(node, ast.ImportFrom) and node.module in {m for m, _ in LOCKS}:
            for alias in node.names:
                if (node.module, alias.name) in LOCKS:
                    found.append(f"{path}:{node.lineno} from {node.module} import {alias.name}")
    return found


def test_no_in_process_lock_in_the_apps():
    found = [hit for app in APPS for path in (ROOT / app).rglob("*.py") for hit in lock_uses(path)]
    assert found == []


def test_the_lock_check_sees_a_lock(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import asyncio\nfrom threading import RLock\nlock = asyncio.Lock()\n")
    assert len(lock_uses(sample)) == 2


@pytest.fixture
def query_count(monkeypatch):
    """Counts every cursor any thread opens on any database connection."""
    opened = []
    original = BaseDatabaseWrapper.cursor

    def counting_cursor(self):
        opened.append(self.alias)
        return original(self)

    monkeypatch.setattr(BaseDatabaseWrapper, "cursor", counting_cursor)
    return opened


@pytest.mark.django_db(transaction=True)
async def test_a_run_of_jobs_makes_no_database_query(published, settings, query_count):
    settings.SCHEDULER_NODE_AUTH = "open"
    node = WebsocketCommunicator(application, "/ws/node?token=unknown-but-auth-is-open")
    assert (await node.connect())[0]
    browser = WebsocketCommunicator(application, "/ws/session")
    assert (await browser.connect())[0]
    assert query_count != []  # the counter sees the token lookup made at connect...
    query_count.clear()  # ...and from here on, nothing may query

    await node.send_json_to(register_frame(["zh", "en"]))
    ack = await node.receive_json_from(timeout=5)
    await browser.send_json_to({"type": "session_init", "client_version": "t", "platform": "web",
                                "src_lang": "zh", "tgt_lang": "en"})
    session = (await browser.receive_json_from(timeout=5))["session_id"]
    for index in range(20):
        await browser.send_json_to({"type": "utterance", "session_id": session, "utterance_index": index,
                                    "manual_cut": True, "src_lang": "zh", "tgt_lang": "en",
                                    "audio": AUDIO_B64, "audio_format": "opus", "sample_rate": 16000})
        job = await node.receive_json_from(timeout=5)
        assert job["type"] == "job_assign"
        await node.send_json_to({"type": "job_result", "job_id": job["job_id"], "attempt_id": 1,
                                 "node_id": ack["node_id"], "session_id": session, "utterance_index": index,
                                 "success": True, "text_asr": "a", "text_translated": "b", "trace_id": None})
        while (frame := await browser.receive_json_from(timeout=5))["type"] != "translation_result":
            pass
        assert frame["utterance_index"] == index
    await node.send_json_to({"type": "node_heartbeat", "node_id": ack["node_id"], "resource_usage": {}})
    assert query_count == []
    await browser.disconnect()
    await node.disconnect()
    assert json.dumps(query_count) == "[]"


@pytest.mark.django_db(transaction=True)
async def test_a_ticket_is_verified_and_its_quotas_counted_with_no_database_query(published, settings, query_count):
    from asgiref.sync import sync_to_async

    from tests.tenancy import customer_create

    settings.SCHEDULER_NODE_AUTH = "open"
    settings.SCHEDULER_SESSION_AUTH = "ticket"
    acme = await sync_to_async(customer_create)("acme", max_sessions=5, audio_minutes="10")
    node = WebsocketCommunicator(application, "/ws/node?token=unknown-but-auth-is-open")
    assert (await node.connect())[0]
    await node.send_json_to(register_frame(["zh", "en"]))
    ack = await node.receive_json_from(timeout=5)
    query_count.clear()  # from the session's handshake on, nothing may query

    browser = WebsocketCommunicator(application, f"/ws/session?access_token={acme.ticket()}")
    assert (await browser.connect())[0]
    await browser.send_json_to({"type": "session_init", "client_version": "t", "platform": "web",
                                "src_lang": "zh", "tgt_lang": "en"})
    session = (await browser.receive_json_from(timeout=5))["session_id"]
    for index in range(5):
        await browser.send_json_to({"type": "utterance", "session_id": session, "utterance_index": index,
                                    "manual_cut": True, "src_lang": "zh", "tgt_lang": "en",
                                    "audio": AUDIO_B64, "audio_format": "opus", "sample_rate": 16000})
        job = await node.receive_json_from(timeout=5)
        await node.send_json_to({"type": "job_result", "job_id": job["job_id"], "attempt_id": 1,
                                 "node_id": ack["node_id"], "session_id": session, "utterance_index": index,
                                 "success": True, "text_asr": "a", "text_translated": "b", "trace_id": None})
        while (await browser.receive_json_from(timeout=5))["type"] != "translation_result":
            pass
    await browser.disconnect()
    await node.disconnect()
    assert json.dumps(query_count) == "[]"
