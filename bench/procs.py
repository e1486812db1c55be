"""Server processes under test, and what the kernel and Redis say they cost.

CPU is ``utime + stime`` from ``/proc/<pid>/stat``; memory is ``VmRSS``. Redis figures come from
``INFO commandstats`` / ``INFO cpu`` deltas and, for the split between top-level calls and the
commands scripts run inside, from a ``MONITOR`` capture (script internals show as ``[db lua]``).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

BASE_DIR = Path(__file__).resolve().parent.parent
LOG_DIR = BASE_DIR / "var" / "bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Process:
    """One child process, its output in ``var/bench/<name>.log``."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = LOG_DIR / f"{name}.log"
        self.log = self.log_path.open("wb")
        self.popen = subprocess.Popen(argv, cwd=BASE_DIR, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.log.close()


def wait_ready(ready: Callable[[], bool], process: Process, what: str, timeout: float = 40) -> None:
    """Poll ``ready`` (an OSError counts as not yet) until it holds; fail with the log's tail
    when the process dies or the time is up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if ready():
                return
        except OSError:
            pass
        if not process.alive() or time.monotonic() > deadline:
            tail = process.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{process.name} did not {what}:\n{tail}")
        time.sleep(0.1)


def tcp_open(port: int) -> bool:
    socket.create_connection(("127.0.0.1", port), timeout=1).close()
    return True


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as response:
        return bool(response.status == 200)


@dataclass
class Server:
    """A daphne process on a free port of 127.0.0.1, started and waited for: a floor server or
    ``schedulerproj.server`` (both take ``--host`` and ``--port``)."""

    port: int
    process: Process

    @classmethod
    def start(cls, name: str, module: str, env: dict[str, str], health: str = "") -> Server:
        """Ready when ``health`` (a path) answers 200, or without one when the port accepts."""
        port = free_port()
        process = Process(name, [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port)], env)
        url = f"http://127.0.0.1:{port}{health}"
        if health:
            wait_ready(lambda: http_ok(url), process, f"answer {url}")
        else:
            wait_ready(lambda: tcp_open(port), process, f"start on port {port}")
        return cls(port, process)

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"


def floor_server(layer: str, env: dict[str, str], layer_prefix: str) -> Server:
    """``bench.floor_server`` with the channel layer ``layer`` under its own key prefix."""
    return Server.start(
        f"floor-{layer}", "bench.floor_server",
        {**env, "BENCH_LAYER": layer, "BENCH_LAYER_PREFIX": layer_prefix, "DJANGO_SETTINGS_MODULE": "bench.floor_settings"},
    )


@dataclass
class FullStack:
    """``python -m schedulerproj.server`` and ``manage.py scheduler_worker``, as shipped."""

    server: Server
    worker: Process

    @classmethod
    def start(cls, env: dict[str, str], name: str = "scheduler") -> FullStack:
        server = Server.start(f"{name}-server", "schedulerproj.server", env, health="/healthz")
        worker = Process(f"{name}-worker", [sys.executable, str(BASE_DIR / "manage.py"), "scheduler_worker"], env)
        return cls(server, worker)

    @property
    def ws(self) -> str:
        return self.server.ws

    @property
    def processes(self) -> list[Process]:
        """Server first, as the probes expect."""
        return [self.server.process, self.worker]

    def stop(self) -> None:
        self.server.process.stop()
        self.worker.stop()


# --- Redis -----------------------------------------------------------------------------------


def redis_client() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True, socket_timeout=30)


def delete_matching(client: redis.Redis, pattern: str) -> None:
    """Delete a run's keys (never FLUSHDB: the Redis may be shared), a thousand at a time."""
    batch: list[str] = []
    for key in client.scan_iter(match=pattern, count=2000):
        batch.append(key)
        if len(batch) >= 1000:
            client.unlink(*batch)
            batch.clear()
    if batch:
        client.unlink(*batch)


@dataclass
class RedisSnapshot:
    calls: dict[str, int]
    usec: dict[str, int]
    cpu: float  # used_cpu_user + used_cpu_sys, seconds
    memory: int  # used_memory, bytes

    @classmethod
    def take(cls, client: redis.Redis) -> RedisSnapshot:
        stats = client.info("commandstats")
        cpu = client.info("cpu")
        memory = client.info("memory")
        calls, usec = {}, {}
        for key, value in stats.items():
            name = key.removeprefix("cmdstat_")
            calls[name] = int(value["calls"])
            usec[name] = int(value["usec"])
        return cls(calls, usec, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), int(memory["used_memory"]))

    def minus(self, before: RedisSnapshot) -> RedisDelta:
        # INFO itself is not the workload's: leave it out.
        calls = {k: v - before.calls.get(k, 0) for k, v in self.calls.items() if k != "info"}
        usec = {k: v - before.usec.get(k, 0) for k, v in self.usec.items() if k != "info"}
        return RedisDelta(
            calls={k: v for k, v in calls.items() if v}, usec=usec, cpu=self.cpu - before.cpu,
            memory=self.memory - before.memory,
        )


@dataclass
class RedisDelta:
    calls: dict[str, int]
    usec: dict[str, int]
    cpu: float
    memory: int

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def total_usec(self) -> int:
        return sum(self.usec.values())


# Commands the MONITOR line starts with: +<time> [<db> <client>] "<COMMAND>" "<arg>"...
MONITOR_LINE = re.compile(r'^\+?[\d.]+ \[\d+ (?P<client>[^\]]+)\] "(?P<cmd>[^"]+)"(?: "(?P<arg1>[^"]*)")?')


@dataclass
class MonitorCount:
    """Commands seen by MONITOR: top-level ones (a script call named ``evalsha <script>``) and
    the commands each script ran inside, by (script, command): ``[db lua]`` lines follow their
    EVALSHA."""

    top: Counter[str] = field(default_factory=Counter)
    internal: Counter[tuple[str, str]] = field(default_factory=Counter)
    seconds: float = 0.0


class Monitor:
    """A MONITOR capture in a thread, from ``start()`` until ``stop()`` (a marker ECHO)."""

    def __init__(self, script_names: dict[str, str]) -> None:
        self.script_names = script_names  # sha → name
        self.count = MonitorCount()
        self.marker = f"bench-monitor-stop-{uuid.uuid4().hex}"
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Monitor:
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("MONITOR did not start")
        self.started = time.monotonic()
        return self

    def stop(self) -> MonitorCount:
        self.count.seconds = time.monotonic() - self.started
        redis_client().echo(self.marker)
        self.thread.join(30)
        return self.count

    def _run(self) -> None:
        client = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=60)
        connection = client.connection_pool.get_connection()
        connection.send_command("MONITOR")
        connection.read_response()  # OK
        self.ready.set()
        current = "?"
        try:
            while True:
                line = connection.read_response()
                if isinstance(line, bytes):
                    line = line.decode("utf-8", "replace")
                match = MONITOR_LINE.match(line)
                if match is None:
                    continue
                cmd = match["cmd"].lower()
                if match["client"] == "lua":
                    self.count.internal[(current, cmd)] += 1
                    continue
                if cmd == "echo" and match["arg1"] == self.marker:
                    return
                if cmd == "evalsha":
                    current = self.script_names.get(match["arg1"] or "", "unknown script")
                    self.count.top[f"evalsha {current}"] += 1
                elif cmd == "eval":
                    current = "eval"
                    self.count.top["eval"] += 1
                elif cmd not in ("info", "monitor"):
                    self.count.top[cmd] += 1
        finally:
            connection.disconnect()
