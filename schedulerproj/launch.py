"""What ``make run``, ``make reload`` and ``make test`` run after installing requirements.

``python -m schedulerproj.launch run``: listen first (ports ``PORT``..``PORT+WORKERS-1`` on
``HOST``), so a connect made while the rest starts waits instead of being refused; start a
private Redis when ``REDIS_URL`` is unset, migrate, collect static files when they changed, make
a development node token on the first run; then run ``WORKERS`` daphne processes on those
sockets and one ``scheduler_worker`` until Ctrl-C or SIGTERM, and stop all of it. The launcher's
pid is in ``var/run-PORT.pid`` while it runs; SIGHUP replaces the processes one at a time
(schedulerproj/supervise.py).

``python -m schedulerproj.launch reload``: send that SIGHUP (``make reload``).

``python -m schedulerproj.launch setup``: the set-up steps alone (a reload runs them first).

``python -m schedulerproj.launch exec -- CMD...``: run CMD with a private Redis (its own
folder, no append-only file) when ``REDIS_URL`` is unset; used by ``make test``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("SCHEDULER_VAR_DIR", BASE_DIR / "var"))
DEV_TOKEN_FILE = VAR_DIR / "dev_node_token"
PYTHON = sys.executable


def _port() -> int:
    return int(os.environ.get("PORT", "5010"))


def pid_file(port: int) -> Path:
    return VAR_DIR / f"run-{port}.pid"


def _embedded(directory: Path, *, append_only: bool):  # type: ignore[no-untyped-def]
    """A private Redis, launched: ``until_ready()`` waits for it to answer."""
    from schedulerproj.embedded_redis import EmbeddedRedis

    return EmbeddedRedis(directory, append_only=append_only).launch()


def _django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "schedulerproj.settings")
    from django.apps import apps

    if not apps.ready:
        import django

        django.setup()


def _dev_token() -> str:
    """The development node token: created on the first run, its plaintext kept in var/."""
    from nodes.tokens import token_ensure

    existing = DEV_TOKEN_FILE.read_text().strip() if DEV_TOKEN_FILE.exists() else None
    token = token_ensure(name="dev", plaintext=existing)
    DEV_TOKEN_FILE.write_text(token)
    DEV_TOKEN_FILE.chmod(0o600)
    return token


def _static_sources() -> str:
    """A digest of the static files collectstatic would copy (names, sizes, times)."""
    from django.conf import settings
    from django.contrib.staticfiles import finders

    digest = hashlib.sha256(repr(settings.STORAGES["staticfiles"]).encode())
    for finder in finders.get_finders():
        for path, storage in finder.list([]):
            stat = os.stat(storage.path(path))
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def setup(*, dev_token: bool) -> str | None:
    """Migrate, collect static files when their sources changed, and with ``dev_token`` make
    sure of the development token (returned). In this process: a separate ``manage.py`` per
    step would cost a Python and Django start-up each."""
    _django()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", interactive=False, verbosity=0)  # nothing to apply: a few ms
    stamp = Path(settings.STATIC_ROOT) / ".collected-from"
    sources = _static_sources()
    if not stamp.exists() or stamp.read_text() != sources:
        call_command("collectstatic", interactive=False, verbosity=0)
        stamp.write_text(sources)
    token = _dev_token() if dev_token else None
    connections.close_all()
    return token


def _listen(host: str, ports: range) -> list[socket.socket]:
    from schedulerproj.handoff import listening_socket

    sockets: list[socket.socket] = []
    try:
        for port in ports:
            sockets.append(listening_socket(host, port))
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def run() -> int:
    from schedulerproj.supervise import Supervisor, say

    host = os.environ.get("HOST", "0.0.0.0")
    port = _port()
    workers = int(os.environ.get("WORKERS", "1"))
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    try:
        sockets = _listen(host, range(port, port + workers))
    except OSError as error:
        print(f"cannot listen on {host} ports {port} to {port + workers - 1}: {error}", file=sys.stderr)
        return 1
    supervisor = Supervisor(sockets)

    def stop(_signum: int, _frame: Any) -> None:
        supervisor.stopping = True

    def reload(_signum: int, _frame: Any) -> None:
        supervisor.reload_wanted = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, reload)
    pid_path = pid_file(port)
    pid_path.write_text(f"{os.getpid()}\n")
    redis_server = None
    try:
        if not os.environ.get("REDIS_URL") and not os.environ.get("REDIS_SENTINELS"):
            redis_server = _embedded(VAR_DIR / "redis", append_only=True)
            os.environ["REDIS_URL"] = redis_server.url
        _django()  # while the private Redis starts (it reads its append-only file)
        if redis_server is not None:
            redis_server.until_ready()
        token = setup(dev_token=True)
        if supervisor.stopping:
            return 0
        if not supervisor.start():
            if supervisor.stopping:
                return 0
            say("a server process did not start; stopping")
            return 1
        ports = ", ".join(str(port + i) for i in range(workers))
        say(
            f"""
Scheduler running on port(s) {ports} (Redis: {os.environ.get('REDIS_URL') or 'Sentinel'}).
  Admin:          http://localhost:{port}/admin/
  First admin:    .venv/bin/python manage.py createsuperuser
  Dashboard:      http://localhost:{port}/dashboard/
  Node URL:       ws://localhost:{port}/ws/node?token={token}
  Browser URL:    ws://localhost:{port}/ws/session
Reload (new code, no refused connection): make reload PORT={port}   (or kill -HUP {os.getpid()})
Stop with Ctrl-C.
"""
        )
        while not supervisor.stopping:
            if supervisor.reload_wanted:
                supervisor.reload()
            if not supervisor.alive() and not supervisor.stopping:
                say("a server or worker process exited; stopping")
                return 1
            time.sleep(0.1)
        return 0
    finally:
        supervisor.stop()
        if redis_server is not None:
            redis_server.stop()
        if pid_path.exists() and pid_path.read_text().strip() == str(os.getpid()):
            pid_path.unlink()


def send_reload() -> int:
    """SIGHUP to the launcher of ``make run`` on ``PORT``."""
    path = pid_file(_port())
    try:
        pid = int(path.read_text())
    except (FileNotFoundError, ValueError):
        print(f"no `make run` on port {_port()} ({path} is missing)", file=sys.stderr)
        return 1
    cmdline = Path(f"/proc/{pid}/cmdline")  # where there is /proc: a stale file's pid may be reused
    try:
        if cmdline.parent.parent.exists() and b"schedulerproj.launch" not in cmdline.read_bytes():
            raise ProcessLookupError
        os.kill(pid, signal.SIGHUP)
    except (ProcessLookupError, FileNotFoundError):
        print(f"no `make run` on port {_port()} (pid {pid} in {path} is gone)", file=sys.stderr)
        return 1
    print(f"reloading `make run` on port {_port()} (pid {pid}); its output shows the progress")
    return 0


def exec_with_redis(command: list[str]) -> int:
    redis_server = None
    if not os.environ.get("REDIS_URL"):
        # A folder per run: several test runs on one machine do not share a server.
        redis_server = _embedded(VAR_DIR / f"redis-exec-{os.getpid()}", append_only=False).until_ready()
        os.environ["REDIS_URL"] = redis_server.url
    try:
        return subprocess.call(command, cwd=BASE_DIR)
    finally:
        if redis_server is not None:
            redis_server.stop()
            shutil.rmtree(redis_server.directory, ignore_errors=True)


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["run"]:
        sys.exit(run())
    if args[:1] == ["reload"]:
        sys.exit(send_reload())
    if args[:1] == ["setup"]:
        setup(dev_token=False)
        sys.exit(0)
    if args[:1] == ["exec"]:
        command = args[2:] if args[1:2] == ["--"] else args[1:]
        sys.exit(exec_with_redis(command))
    sys.exit("usage: python -m schedulerproj.launch run | reload | setup | exec -- CMD...")


if __name__ == "__main__":
    main()
