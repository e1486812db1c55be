"""What ``make run`` and ``make test`` run after installing requirements.

``python -m schedulerproj.launch run``: start a private Redis when ``REDIS_URL`` is unset,
migrate, make a development node token on the first run, then run ``WORKERS`` daphne
processes (ports ``PORT``..``PORT+WORKERS-1``) and one ``scheduler_worker`` until Ctrl-C or
SIGTERM, and stop all of it.

``python -m schedulerproj.launch exec -- CMD...``: run CMD with a private Redis (its own
folder, no append-only file) when ``REDIS_URL`` is unset; used by ``make test``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("SCHEDULER_VAR_DIR", BASE_DIR / "var"))
DEV_TOKEN_FILE = VAR_DIR / "dev_node_token"
PYTHON = sys.executable


def _manage(*args: str) -> None:
    subprocess.run([PYTHON, str(BASE_DIR / "manage.py"), *args], check=True, cwd=BASE_DIR)


def _embedded(directory: Path, *, append_only: bool):  # type: ignore[no-untyped-def]
    from schedulerproj.embedded_redis import EmbeddedRedis

    return EmbeddedRedis(directory, append_only=append_only).start()


def _dev_token() -> str:
    """The development node token: created on the first run, its plaintext kept in var/."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "schedulerproj.settings")
    import django

    django.setup()
    from nodes.tokens import token_ensure

    existing = DEV_TOKEN_FILE.read_text().strip() if DEV_TOKEN_FILE.exists() else None
    token = token_ensure(name="dev", plaintext=existing)
    DEV_TOKEN_FILE.write_text(token)
    DEV_TOKEN_FILE.chmod(0o600)
    return token


def run() -> int:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    redis_server = None
    if not os.environ.get("REDIS_URL") and not os.environ.get("REDIS_SENTINELS"):
        redis_server = _embedded(VAR_DIR / "redis", append_only=True)
        os.environ["REDIS_URL"] = redis_server.url
    children: list[subprocess.Popen[bytes]] = []
    try:
        _manage("migrate", "--noinput", "-v", "0")
        _manage("collectstatic", "--noinput", "-v", "0")
        token = _dev_token()
        port = int(os.environ.get("PORT", "5010"))
        workers = int(os.environ.get("WORKERS", "1"))
        for index in range(workers):
            children.append(
                subprocess.Popen(
                    [PYTHON, "-m", "schedulerproj.server", "--port", str(port + index)], cwd=BASE_DIR
                )
            )
        children.append(subprocess.Popen([PYTHON, str(BASE_DIR / "manage.py"), "scheduler_worker"], cwd=BASE_DIR))
        ports = ", ".join(str(port + i) for i in range(workers))
        print(
            f"""
Scheduler running on port(s) {ports} (Redis: {os.environ.get('REDIS_URL') or 'Sentinel'}).
  Admin:          http://localhost:{port}/admin/
  First admin:    .venv/bin/python manage.py createsuperuser
  Dashboard:      http://localhost:{port}/dashboard/
  Node URL:       ws://localhost:{port}/ws/node?token={token}
  Browser URL:    ws://localhost:{port}/ws/session
Stop with Ctrl-C.
""",
            flush=True,
        )
        stopping = False

        def stop(_signum: int, _frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.2)
        return 0 if stopping else 1
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
        if redis_server is not None:
            redis_server.stop()


def exec_with_redis(command: list[str]) -> int:
    redis_server = None
    if not os.environ.get("REDIS_URL"):
        # A folder per run: several test runs on one machine do not share a server.
        redis_server = _embedded(VAR_DIR / f"redis-exec-{os.getpid()}", append_only=False)
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
    if args[:1] == ["exec"]:
        command = args[2:] if args[1:2] == ["--"] else args[1:]
        sys.exit(exec_with_redis(command))
    sys.exit("usage: python -m schedulerproj.launch run | exec -- CMD...")


if __name__ == "__main__":
    main()
