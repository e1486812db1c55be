"""Real server processes for end-to-end tests: daphne (our entry point) and the worker."""

from __future__ import annotations

import contextlib
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
    """``servers`` daphne processes on their own ports, plus ``worker`` scheduler_worker copies.
    With ``server_log``, the daphne processes write their output to that file."""

    def __init__(
        self, prefix: str, *, servers: int = 1, worker: bool = True, server_env: dict[str, str] | None = None,
        server_log: Path | None = None, **env: Any,
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
        self.server_log = server_log

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
        output = self.server_log.open("ab") if self.server_log else None
        self.servers[index] = subprocess.Popen(
            [sys.executable, "-m", "schedulerproj.server", "--host", "127.0.0.1", "--port", str(self.ports[index])],
            cwd=BASE_DIR,
            env=self.server_env,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
        )
        if output:
            output.close()  # the process has its own copy
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
            try:  # a stopping server exits within 30 s whatever happens (schedulerproj/server.py)
                process.wait(40)
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


class Launcher:
    """``make run`` itself (``python -m schedulerproj.launch run``) on its own port and var
    folder, with the test run's Redis and key ``prefix``; its database is SQLite in that folder.
    Its output goes to ``var/launcher.log`` (read by ``wait_for``)."""

    def __init__(self, prefix: str, var_dir: Path, *, workers: int = 1, **env: Any) -> None:
        self.var_dir = var_dir
        self.ports = free_ports(workers)
        self.env = {
            **{key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "PORT", "WORKERS")},
            "HOST": "127.0.0.1",
            "PORT": str(self.ports[0]),
            "WORKERS": str(workers),
            "SCHEDULER_VAR_DIR": str(var_dir),
            "SCHEDULER_REDIS_PREFIX": prefix,
            "LOG_LEVEL": os.environ.get("TEST_SERVER_LOG_LEVEL", "WARNING"),
            **{key: str(value) for key, value in env.items()},
        }
        self.log = var_dir / "launcher.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start it; the seconds from start to its first HTTP answer (``/healthz``)."""
        self.var_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "schedulerproj.launch", "run"], cwd=BASE_DIR, env=self.env,
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = started + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.http()}/healthz", timeout=30) as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"make run did not start:\n{self.output()[-3000:]}")
            time.sleep(0.02)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, line: str, count: int = 1, timeout: float = 60) -> None:
        """Until ``line`` has appeared ``count`` times in its output."""
        deadline = time.monotonic() + timeout
        while self.output().count(line) < count:
            if time.monotonic() > deadline or self.process is None or self.process.poll() is not None:
                raise TimeoutError(f"no {line!r} (x{count}) from make run:\n{self.output()[-3000:]}")
            time.sleep(0.05)

    def reload(self) -> None:
        """``make reload`` (the command it runs), then wait until the launcher has replaced its processes."""
        done = self.output().count("reload: done")
        subprocess.run([sys.executable, "-m", "schedulerproj.launch", "reload"], cwd=BASE_DIR, env=self.env, check=True)
        self.wait_for("reload: done", done + 1)

    def pid_file(self) -> Path:
        return self.var_dir / f"run-{self.ports[0]}.pid"

    def dev_token(self) -> str:
        return (self.var_dir / "dev_node_token").read_text().strip()

    def ws(self, index: int = 0) -> str:
        return f"ws://127.0.0.1:{self.ports[index]}"

    def http(self, index: int = 0) -> str:
        return f"http://127.0.0.1:{self.ports[index]}"

    def stop(self) -> int | None:
        """SIGTERM and wait; its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def free_ports(count: int) -> list[int]:
    """``count`` consecutive free ports (``make run`` serves ``PORT``..``PORT+WORKERS-1``)."""
    while True:
        first = free_port()
        try:
            with contextlib.ExitStack() as held:
                for port in range(first + 1, first + count):
                    held.enter_context(socket.socket()).bind(("127.0.0.1", port))
        except OSError:
            continue
        return list(range(first, first + count))
