"""What ``make demo`` runs: ``make run`` plus a small simulated fleet, and an admin user to watch
it with.

``python -m schedulerproj.demo`` starts ``python -m schedulerproj.launch run`` (servers, worker,
private Redis) as a child, waits until the server answers, makes sure the demo's admin user
exists (``demo``, its password kept in ``var/demo_admin_password``), then runs
``manage.py fleet_simulate`` beside it: a few language pairs, one pair no node serves (its jobs
end with NO_AVAILABLE_NODE) and one flaky node (its failures and drops move jobs to other nodes).
Ctrl-C or SIGTERM stops both, the simulator first so its summary is not about a server going away.
The servers' and the worker's logs go to ``var/demo-scheduler.log``, so the terminal shows the
simulator's live line.

The demo listens on 127.0.0.1 unless ``HOST`` is set, since it has an admin with a password
printed on the terminal.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request

from schedulerproj.launch import BASE_DIR, PYTHON, VAR_DIR

DEMO_USER = "demo"
PASSWORD_FILE = VAR_DIR / "demo_admin_password"
LOG_FILE = VAR_DIR / "demo-scheduler.log"  # the servers' and the worker's logs, off the terminal
START_LIMIT_S = 300.0  # the first run migrates a fresh database
SIMULATOR_STOP_S = 15.0
LAUNCHER_STOP_S = 30.0
# Four nodes serving zh, en, de and ja (the fourth one flaky), eight sessions; th-vi has no node.
FLEET = [
    "--nodes", "4", "--node-languages", "zh,en,de,ja", "--slots", "3", "--service-ms", "900±400",
    "--flaky", "1", "--fail-rate", "0.3", "--drop-rate", "0.1",
    "--sessions", "8", "--languages", "zh-en:4,en-zh:2,en-de:2,ja-en:1,th-vi:1", "--two-way", "0.25",
    "--talk-every", "4", "--utterance-ms", "1500", "--drain", "5",
]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def demo_admin() -> str:
    """The demo's admin user, created (or its password set again) idempotently; its password."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "schedulerproj.settings")
    import django

    django.setup()
    from django.contrib.auth.models import User

    password = PASSWORD_FILE.read_text().strip() if PASSWORD_FILE.exists() else ""
    if not password:
        password = secrets.token_urlsafe(12)
        PASSWORD_FILE.write_text(password)
        PASSWORD_FILE.chmod(0o600)
    user = User.objects.filter(username=DEMO_USER).first() or User(username=DEMO_USER)
    user.is_staff = user.is_superuser = user.is_active = True
    user.set_password(password)
    user.save()
    return password


def stop_child(child: subprocess.Popen[bytes] | None, signum: int, limit_s: float) -> None:
    if child is None or child.poll() is not None:
        return
    child.send_signal(signum)
    try:
        child.wait(limit_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def run() -> int:
    port = int(os.environ.get("PORT", "5010"))
    host = os.environ.get("HOST", "127.0.0.1")
    local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    env = {**os.environ, "HOST": host}
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_FILE.open("ab")
    # Their own sessions: a Ctrl-C reaches only this process, which stops them in order.
    launcher = subprocess.Popen([PYTHON, "-m", "schedulerproj.launch", "run"], cwd=BASE_DIR, env=env,
                                stderr=log, start_new_session=True)
    simulator: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + START_LIMIT_S
        while not answers(f"http://{local}:{port}/healthz"):
            if stopping:
                return 0
            if launcher.poll() is not None:
                return stopped(launcher)
            if time.monotonic() > deadline:
                print(f"demo: the scheduler did not answer on port {port} in time", file=sys.stderr)
                return 1
            time.sleep(0.3)
        password = demo_admin()
        base = f"http://{'localhost' if local == '127.0.0.1' else local}:{port}"
        print(
            f"""
Demo: a simulated fleet talks to the scheduler (manage.py fleet_simulate {' '.join(FLEET)}).
  Dashboard:      {base}/dashboard/   log in as {DEMO_USER} / {password}
  A job's story:  {base}/dashboard/jobs/   (the first failover's address is printed below)
  What you see:   4 nodes, the 4th one flaky (it fails a job now and then, and drops its connection);
                  sessions on zh-en, en-zh, en-de, ja-en and th-vi; no node serves th-vi, so its
                  jobs end with NO_AVAILABLE_NODE.
  Server logs:    {LOG_FILE}
Stop with Ctrl-C.
""",
            flush=True,
        )
        simulator = subprocess.Popen(
            [PYTHON, str(BASE_DIR / "manage.py"), "fleet_simulate", "--url", base.replace("http", "ws", 1), *FLEET],
            cwd=BASE_DIR, env=env, start_new_session=True,
        )
        while not stopping and launcher.poll() is None and simulator.poll() is None:
            time.sleep(0.2)
        if stopping:
            return 0
        return stopped(launcher) if launcher.poll() is not None else 1
    finally:
        stop_child(simulator, signal.SIGINT, SIMULATOR_STOP_S)
        stop_child(launcher, signal.SIGTERM, LAUNCHER_STOP_S)
        log.close()


def stopped(launcher: subprocess.Popen[bytes]) -> int:
    """The scheduler ended by itself: say so, with the end of its log."""
    tail = LOG_FILE.read_text(errors="replace").splitlines()[-5:] if LOG_FILE.exists() else []
    print(f"demo: the scheduler stopped (exit status {launcher.returncode}); the end of {LOG_FILE}:",
          *tail, sep="\n  ", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(run())
