"""``manage.py node_token create|list|revoke`` (docs/protocol.md, node authentication): tokens are
stored hashed, shown once, and a revoked token no longer authenticates and closes its nodes."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from dispatch.nodes import node_register
from dispatch.protocol import decode_node_frame
from nodes.models import NodeToken
from nodes.tokens import token_authenticate
from tests.clients import register_frame
from tests.servers import BASE_DIR, database_url


def node_token(*args: str) -> list[str]:
    out = io.StringIO()
    call_command("node_token", *args, stdout=out)
    return out.getvalue().splitlines()


def manage(*args: str) -> subprocess.CompletedProcess[str]:
    """``manage.py`` in a process of its own, on the test database and this run's Redis keys."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env={**os.environ, "DATABASE_URL": database_url(), "SCHEDULER_REDIS_PREFIX": settings.SCHEDULER_REDIS_PREFIX},
        capture_output=True,
        text=True,
        timeout=60,
    )


# --- create -----------------------------------------------------------------------------------


def test_create_prints_the_token_as_its_last_line(db: None) -> None:
    plaintext = node_token("create", "gpu-rack-1")[-1]

    token = token_authenticate(plaintext)
    assert token is not None
    assert token.name == "gpu-rack-1"
    assert plaintext not in (token.token_hash, token.name)  # stored hashed only
    assert not NodeToken.objects.filter(token_hash=plaintext).exists()


def test_each_token_is_different(db: None) -> None:
    first, second = node_token("create", "a")[-1], node_token("create", "b")[-1]
    assert first != second
    assert token_authenticate(first).name == "a"  # type: ignore[union-attr]
    assert token_authenticate(second).name == "b"  # type: ignore[union-attr]


def test_an_unknown_token_does_not_authenticate(db: None) -> None:
    node_token("create", "a")
    assert token_authenticate("nt_not-a-token") is None
    assert token_authenticate("") is None
    assert token_authenticate(None) is None


def test_create_with_a_taken_name_is_refused(transactional_db: None) -> None:
    first = node_token("create", "gpu-rack-1")[-1]

    with pytest.raises(CommandError, match="gpu-rack-1"):
        node_token("create", "gpu-rack-1")

    assert NodeToken.objects.filter(name="gpu-rack-1").count() == 1
    assert token_authenticate(first) is not None  # the first one still works


def test_create_in_a_process_of_its_own_exits_1_on_a_taken_name(transactional_db: None, live_prefix: str) -> None:
    created = manage("node_token", "create", "gpu-rack-1")
    assert created.returncode == 0, created.stderr
    plaintext = created.stdout.splitlines()[-1]
    assert token_authenticate(plaintext).name == "gpu-rack-1"  # type: ignore[union-attr]

    again = manage("node_token", "create", "gpu-rack-1")

    assert again.returncode == 1
    assert "gpu-rack-1" in again.stderr
    assert "already exists" in again.stderr
    assert "Traceback" not in again.stderr
    assert NodeToken.objects.count() == 1


# --- list -------------------------------------------------------------------------------------


def test_list_prints_one_line_per_token(db: None, live_prefix: str) -> None:
    used = node_token("create", "used")[-1]
    node_token("create", "idle")
    node_token("create", "gone")
    token_authenticate(used)
    node_token("revoke", "gone")

    lines = node_token("list")

    assert len(lines) == 3
    by_name = {line.split("\t")[0]: line for line in lines}
    assert sorted(by_name) == ["gone", "idle", "used"]
    for line in lines:
        assert "created 2" in line  # a date, e.g. created 2025-...
    assert "last used 2" in by_name["used"]
    assert "last used -" in by_name["idle"]
    assert "revoked -" in by_name["used"]
    assert "revoked -" in by_name["idle"]
    assert "revoked 2" in by_name["gone"]
    assert not any(used in line for line in lines)  # never the token itself


def test_list_with_no_tokens_prints_nothing(db: None) -> None:
    assert node_token("list") == []


# --- revoke -----------------------------------------------------------------------------------


def test_revoke_marks_the_token_revoked(db: None, live_prefix: str) -> None:
    plaintext = node_token("create", "gpu-rack-1")[-1]
    kept = node_token("create", "gpu-rack-2")[-1]

    node_token("revoke", "gpu-rack-1")

    assert NodeToken.objects.get(name="gpu-rack-1").revoked
    assert token_authenticate(plaintext) is None
    assert token_authenticate(kept) is not None


def test_revoke_of_an_unknown_name_is_refused(db: None, live_prefix: str) -> None:
    with pytest.raises(CommandError, match="nobody"):
        node_token("revoke", "nobody")


def test_revoke_in_a_process_of_its_own(transactional_db: None, live_prefix: str) -> None:
    plaintext = node_token("create", "gpu-rack-1")[-1]

    revoked = manage("node_token", "revoke", "gpu-rack-1")
    assert revoked.returncode == 0, revoked.stderr
    assert token_authenticate(plaintext) is None

    unknown = manage("node_token", "revoke", "nobody")
    assert unknown.returncode == 1
    assert "nobody" in unknown.stderr


@pytest.fixture
def token_id(transactional_db: None) -> str:
    node_token("create", "gpu-rack-1")
    return str(NodeToken.objects.get(name="gpu-rack-1").pk)


async def test_revoke_closes_the_tokens_live_nodes_with_4401(published: str, token_id: str) -> None:
    layer = get_channel_layer()
    channel, other_channel = await layer.new_channel(), await layer.new_channel()
    frame: Any = decode_node_frame(json.dumps(register_frame(["zh", "en"])))
    await node_register(frame=frame, token=token_id, channel=channel, current_id=None)
    await node_register(frame=frame, token="another-token", channel=other_channel, current_id=None)

    lines = await sync_to_async(node_token)("revoke", "gpu-rack-1")

    assert "1 live node(s) closed" in lines[-1]
    message = await asyncio.wait_for(layer.receive(channel), 5)
    assert message == {"type": "node.close", "code": 4401}
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(other_channel), 0.3)
