"""Staff-side clients for tests: a logged-in user's session cookie, plain HTTP against a server
process, and the dashboard socket."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

import websockets

from tests.clients import Client

PASSWORD = "dashboard-test-password-7Q"


def user_create(*, staff: bool, superuser: bool = False) -> str:
    """A user (staff or not) with ``PASSWORD``; its username."""
    from django.contrib.auth.models import User

    name = f"{'staff' if staff else 'user'}-{uuid.uuid4().hex[:6]}"
    User.objects.create_user(username=name, password=PASSWORD, is_staff=staff, is_superuser=superuser)
    return name


def login_cookie(*, staff: bool, superuser: bool = False) -> str:
    """The ``Cookie`` header of a logged-in user's session (server processes share the test
    database, so they know it)."""
    from django.contrib.auth.models import User
    from django.test import Client as DjangoClient

    client = DjangoClient()
    client.force_login(User.objects.get(username=user_create(staff=staff, superuser=superuser)))
    return f"sessionid={client.cookies['sessionid'].value}"


@dataclass(frozen=True)
class Page:
    status: int
    body: str
    location: str | None
    content_type: str


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def fetch(url: str, cookie: str | None = None) -> Page:
    """GET ``url`` without following redirects."""
    request = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return Page(response.status, response.read().decode(), None, response.headers.get("Content-Type", ""))
    except urllib.error.HTTPError as error:
        return Page(error.code, error.read().decode(), error.headers.get("Location"), error.headers.get("Content-Type", ""))


SAMPLE = re.compile(r'^([a-z_]+)(\{[^}]*\})? (\S+)$')


def scrape(server: Any, index: int) -> tuple[str, dict[str, float]]:
    """``/metrics`` of a server process: its text, and each sample by name and labels."""
    page = fetch(f"{server.http(index)}/metrics")
    assert page.status == 200 and page.content_type.startswith("text/plain; version=0.0.4")
    samples = {}
    for line in page.body.splitlines():
        if line and not line.startswith("#"):
            match = SAMPLE.match(line)
            assert match, f"not a Prometheus sample: {line!r}"
            samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return page.body, samples


class DashboardSocket(Client):
    """``/ws/dashboard`` as the page opens it: same origin, session cookie."""

    @classmethod
    async def connect(cls, http_base: str, cookie: str | None, origin: str | None = "same") -> DashboardSocket:
        headers = {"Cookie": cookie} if cookie else {}
        if origin == "same":
            origin = http_base
        if origin is not None:
            headers["Origin"] = origin
        url = http_base.replace("http://", "ws://") + "/ws/dashboard"
        return cls(await websockets.connect(url, additional_headers=headers))

    async def snapshot(self, condition: Any = None, timeout: float = 10.0) -> dict[str, Any]:
        """The next snapshot for which ``condition(snapshot)`` holds (older ones are dropped)."""
        self.backlog = [frame for frame in self.backlog if frame.get("type") != "snapshot"]
        return await self.expect(
            lambda f: f.get("type") == "snapshot" and (condition is None or bool(condition(f))), timeout
        )

    async def request(self, frame: dict[str, Any]) -> None:
        await self.send(json.dumps(frame))


def node_row(snapshot: dict[str, Any], node_id: str) -> dict[str, Any]:
    return next(node for node in snapshot["nodes"] if node["id"] == node_id)


def pool_row(snapshot: dict[str, Any], name: str) -> dict[str, Any]:
    return next(pool for pool in snapshot["pools"] if pool["name"] == name)
