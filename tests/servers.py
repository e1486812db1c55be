"""Real server processes for end-to-end tests: daphne (our entry point) and the worker."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from django.db import connection

BASE_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url() -> str:
    """The test database as a URL the server processes can open."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


class Stack:
    """``servers`` daphne processes on their own ports, plus ``worker`` scheduler_worker copies."""

    def __init__(
        self, prefix: str, *, servers: int = 1, worker: bool = True, server_env: dict[str, str] | None = None,
        **env: Any,
    ) -> None:
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "schedulerproj.settings",
            "SCHEDULER_REDIS_PREFIX": prefix,
            "DATABASE_URL": database_url(),
            "LOG_LEVEL": os.environ.get("TEST_SERVER_LOG_LEVEL", "WARNING"),
            **{key: str(value) for key, value in env.items()},
        }
        self.server_env = {**self.env, **(server_env or {})}  # for the daphne processes only
        self.ports = [free_port() for _ in range(servers)]
        self.servers: list[subprocess.Popen[bytes] | None] = [None] * servers
        self.workers: list[subprocess.Popen[bytes]] = []
        self.want_worker = worker

    def start(self) -> Stack:
        # The worker boots beside the servers, and is up before a test begins: a job waiting
        # for a node (SCHEDULER_DISPATCH_WAIT_S, often 1 s in tests) is retried only by it.
        worker = self.start_worker() if self.want_worker else None
        for index in range(len(self.ports)):
            self.start_server(index)
        if worker is not None and self.env.get("REDIS_URL") == os.environ.get("REDIS_URL"):
            self.wait_worker(worker)  # (it reports into the Redis of this test run)
        return self

    def start_server(self, index: int) -> None:
        self.servers[index] = subprocess.Popen(
            [sys.executable, "-m", "schedulerproj.server", "--host", "127.0.0.1", "--port", str(self.ports[index])],
            cwd=BASE_DIR,
            env=self.server_env,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.http(index)}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if self.servers[index].poll() is not None or time.monotonic() > deadline:  # type: ignore[union-attr]
                raise RuntimeError(f"server on port {self.ports[index]} did not start")
            time.sleep(0.1)

    def start_worker(self) -> subprocess.Popen[bytes]:
        worker = subprocess.Popen(
            [sys.executable, str(BASE_DIR / "manage.py"), "scheduler_worker"], cwd=BASE_DIR, env=self.env
        )
        self.workers.append(worker)
        return worker

    def wait_worker(self, worker: subprocess.Popen[bytes]) -> None:
        """Until the worker has reported in (its first pass)."""
        from dispatch import keys, store

        key = keys.worker(f"{socket.gethostname()}:{worker.pid}")
        deadline = time.monotonic() + 30
        while not store.sync_client().exists(key):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the worker did not start")
            time.sleep(0.05)

    def ws(self, index: int = 0) -> str:
        return f"ws://127.0.0.1:{self.ports[index]}"

    def http(self, index: int = 0) -> str:
        return f"http://127.0.0.1:{self.ports[index]}"

    def stop_server(self, index: int, sig: int = signal.SIGTERM) -> None:
        process = self.servers[index]
        if process is not None and process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop(self) -> None:
        for index in range(len(self.ports)):
            self.stop_server(index)
        for worker in self.workers:
            if worker.poll() is None:
                worker.terminate()
                try:
                    worker.wait(10)
                except subprocess.TimeoutExpired:
                    worker.kill()
