"""``make run``'s processes: a server process per listening socket, and one worker.

The launcher holds the listening sockets; each server process serves an inherited copy. A reload
replaces the server processes one at a time, the way gunicorn does: the new process starts on
the same socket and says it accepts (``READY=1``), and only then is the old one sent SIGTERM, so
it stops accepting and closes its node sockets with 1012 while the new one already accepts
their reconnects. The port never refuses a connection: the socket stays open in the launcher.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from schedulerproj.handoff import ReadinessInbox

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
READY_TIMEOUT_S = 60.0  # a server start on a busy machine; it takes about a second
STOP_TIMEOUT_S = 15.0  # a server drains in 10 s at most (schedulerproj/server.py)


def say(message: str) -> None:
    print(message, flush=True)


def end(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, wait for the exit, SIGKILL after ``STOP_TIMEOUT_S``."""
    if process is None:
        return
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Supervisor:
    """Starts, replaces and stops the processes that serve ``sockets``. ``stopping`` and
    ``reload_wanted`` are set by the launcher's signal handlers."""

    def __init__(self, sockets: list[socket.socket]) -> None:
        self.sockets = sockets
        self.servers: list[subprocess.Popen[bytes] | None] = [None] * len(sockets)
        self.worker: subprocess.Popen[bytes] | None = None
        self.inbox = ReadinessInbox()
        self.stopping = False
        self.reload_wanted = False

    def port(self, index: int) -> int:
        return int(self.sockets[index].getsockname()[1])

    def spawn_server(self, index: int) -> tuple[subprocess.Popen[bytes], socket.socket]:
        """A server process on socket ``index``, and the socket its ``READY=1`` comes to."""
        fd = self.sockets[index].fileno()
        ready, env = self.inbox.open()
        process = subprocess.Popen(
            [PYTHON, "-m", "schedulerproj.server", "--fd", str(fd)],
            cwd=BASE_DIR, env={**os.environ, **env}, pass_fds=(fd,),
        )
        return process, ready

    def until_ready(self, process: subprocess.Popen[bytes], ready: socket.socket) -> bool:
        """Wait for ``process`` to accept; on failure (or a stop meanwhile) it is ended."""
        if self.inbox.wait(ready, process, READY_TIMEOUT_S, lambda: self.stopping):
            return True
        end(process)
        return False

    def spawn_worker(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen([PYTHON, str(BASE_DIR / "manage.py"), "scheduler_worker"], cwd=BASE_DIR)

    def start(self) -> bool:
        """Every server (started together) and the worker; False when a server did not start."""
        started = [self.spawn_server(index) for index in range(len(self.sockets))]
        self.servers = [process for process, _ in started]
        if not all([self.until_ready(process, ready) for process, ready in started]):
            return False
        self.worker = self.spawn_worker()
        return True

    def alive(self) -> bool:
        return all(process is not None and process.poll() is None for process in [*self.servers, self.worker])

    def reload(self) -> bool:
        """Set up again in a fresh process (new migrations, static files), then replace each
        server, then the worker. A failed step keeps the processes that run."""
        self.reload_wanted = False
        say("reload: setting up")
        if subprocess.run([PYTHON, "-m", "schedulerproj.launch", "setup"], cwd=BASE_DIR).returncode != 0:
            if not self.stopping:
                say("reload: set-up failed; the running processes stay")
            return False
        for index in range(len(self.sockets)):
            process, ready = self.spawn_server(index)
            if not self.until_ready(process, ready):
                if not self.stopping:
                    say(f"reload: a new server for port {self.port(index)} did not start; the running one stays")
                return False
            old, self.servers[index] = self.servers[index], process
            end(old)  # it stops accepting and closes its sockets with 1012: nodes reconnect to the new one
            say(f"reload: port {self.port(index)} served by pid {process.pid} (was {old.pid if old else '-'})")
        old_worker, self.worker = self.worker, self.spawn_worker()
        end(old_worker)  # several worker copies may run at once: each item is claimed by one
        say("reload: done")
        return True

    def stop(self) -> None:
        """SIGTERM to every process at once, let go of the listening sockets (the port closes as
        the servers stop listening: a full stop refuses new connections rather than queueing
        them for nobody), then wait for each process."""
        self.stopping = True
        processes = [process for process in [*self.servers, self.worker] if process is not None]
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for sock in self.sockets:
            sock.close()
        for process in processes:
            end(process)
        self.inbox.close()
