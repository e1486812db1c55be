"""Room members for end-to-end tests: browsers that create, join and leave rooms as the existing
web client does, and what they were sent."""

from __future__ import annotations

from typing import Any

from tests.clients import FakeBrowser


async def member(base: str, src: str = "zh", tgt: str = "en", **init: Any) -> FakeBrowser:
    """A browser with a session, ready to enter a room."""
    browser = await FakeBrowser.connect(base)
    ack = await browser.init(src, tgt, **init)
    assert ack["type"] == "session_init_ack", ack
    return browser


async def create(browser: FakeBrowser, **fields: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``room_create``: the ack and the first ``room_members``."""
    await browser.send({"type": "room_create", "client_ts": 1_700_000_000_000, **fields})
    ack = await browser.expect("room_create_ack")
    return ack, await browser.expect("room_members")


async def join(browser: FakeBrowser, room_code: str, **fields: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``room_join``: the compatibility ``room_create_ack`` and the ``room_members`` right after it."""
    await browser.send({"type": "room_join", "room_code": room_code, **fields})
    ack = await browser.expect(lambda f: f["type"] in ("room_create_ack", "room_error"))
    assert ack["type"] == "room_create_ack", ack
    members = await browser.recv()
    assert members["type"] == "room_members", members
    return ack, members


def ids(members: dict[str, Any]) -> list[str]:
    return [member["session_id"] for member in members["members"]]


async def room_error(browser: FakeBrowser, frame: dict[str, Any]) -> str:
    """Send a room frame that must be refused; the ``room_error`` code."""
    await browser.send(frame)
    error = await browser.expect(lambda f: f["type"] in ("room_error", "error", "room_create_ack", "room_members"))
    assert error["type"] == "room_error", error
    assert set(error) == {"type", "code", "message"} and error["message"].endswith(".")
    return str(error["code"])
