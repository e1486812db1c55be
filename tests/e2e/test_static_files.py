"""Static files on a real daphne process, through the asynchronous WhiteNoise middleware
(schedulerproj/static_files.py): served whole with their cache headers, and every other path
passes on to Django."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async

pytestmark = pytest.mark.e2e

DASHBOARD_JS = Path(__file__).resolve().parents[2] / "nodes" / "static" / "dashboard" / "dashboard.js"


def fetch(url: str) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


async def test_a_static_file_is_served_and_other_paths_reach_django(stack):
    server = stack(worker=False)

    status, body, headers = await sync_to_async(fetch)(f"{server.http()}/static/dashboard/dashboard.js")
    assert status == 200
    assert body == DASHBOARD_JS.read_bytes()
    assert "javascript" in headers.get("Content-Type", "")

    status, _, _ = await sync_to_async(fetch)(f"{server.http()}/static/dashboard/no-such-file.js")
    assert status == 404
    status, body, _ = await sync_to_async(fetch)(f"{server.http()}/metrics")
    assert status == 200 and b"scheduler_nodes" in body
