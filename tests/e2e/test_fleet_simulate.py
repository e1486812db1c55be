"""``manage.py fleet_simulate``, run as a person runs it, against real server processes: its
summary counts what the server's ``/metrics`` counts; with failing, silent and vanishing nodes
every utterance still ends exactly once; a scheduler that is not there gives one clear line and
exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.servers import BASE_DIR, free_port
from tests.staff import scrape

pytestmark = pytest.mark.e2e


def fleet_simulate(env: dict[str, str] | None, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), "fleet_simulate", *args],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=timeout,
    )


def simulate(server: Any, token: str, out: Path, *args: str) -> dict[str, Any]:
    """A run against ``server`` with ``args``; its JSON summary."""
    result = fleet_simulate(server.env, "--url", server.ws(), "--token", token, "--json", str(out), *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every utterance ended exactly once" in result.stdout, result.stdout
    return dict(json.loads(out.read_text()))


def offline_nodes(server: Any, count: int, timeout: float = 15.0) -> float:
    """``scheduler_nodes{status="offline"}`` once it reaches ``count``: node gauges come from the
    fleet summary the worker computes once a second, so they follow the fleet by a pass or two."""
    deadline = time.monotonic() + timeout
    while True:
        value = scrape(server, 0)[1]['scheduler_nodes{status="offline"}']
        if value == count or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_its_summary_counts_what_the_servers_metrics_count(stack, node_token, tmp_path):
    server = stack(SCHEDULER_DISPATCH_WAIT_S=1)
    summary = simulate(
        server, node_token, tmp_path / "summary.json",
        "--nodes", "3", "--node-languages", "zh,en,de", "--languages", "zh-en:3,en-de:1,th-vi:1",
        "--sessions", "5", "--two-way", "0.4", "--talk-every", "1", "--service-ms", "200±100",
        "--fail-rate", "0.2", "--duration", "10", "--seed", "7",
    )
    _, metrics = scrape(server, 0)
    total = summary["total"]
    assert summary["exactly_once"] and total["jobs"] == total["ended"] > 20
    assert metrics['scheduler_jobs_total{outcome="result"}'] == total["results"] > 0
    assert metrics['scheduler_jobs_total{outcome="missing"}'] == total["missing"]
    assert metrics['scheduler_jobs_total{outcome="error"}'] == sum(total["errors"].values())
    assert metrics['scheduler_jobs_total{outcome="cancelled"}'] == 0
    assert metrics["scheduler_reassignments_total"] == total["reassignments"] > 0
    # th-vi has no node: each of its jobs found none, counted by the pool it looked in
    unserved = next(pair for label, pair in summary["pairs"].items() if label in ("th-vi", "th~vi"))
    no_node = sum(value for name, value in metrics.items() if name.startswith("scheduler_no_available_node_total"))
    assert no_node == total["errors"]["NO_AVAILABLE_NODE"] == unserved["jobs"] > 0
    assert metrics["scheduler_jobs_in_flight"] == 0
    assert offline_nodes(server, 3) == 3  # the nodes left when the run ended
    assert summary["nodes"]["failed_on_purpose"] > 0


def test_failing_silent_and_vanishing_nodes_still_end_every_utterance_once(stack, node_token, tmp_path):
    server = stack(SCHEDULER_JOB_TIMEOUT_S=2, SCHEDULER_DISPATCH_WAIT_S=2)
    summary = simulate(
        server, node_token, tmp_path / "summary.json",
        "--nodes", "4", "--sessions", "6", "--languages", "zh,en", "--talk-every", "0.7", "--service-ms", "300±200",
        "--fail-rate", "0.15", "--timeout-rate", "0.05", "--drop-rate", "0.1", "--utterance-frames",
        "--duration", "10", "--seed", "3",
    )
    for label, pair in summary["pairs"].items():
        assert pair["jobs"] == pair["ended"] and not (pair["repeated"] or pair["lost"] or pair["unended"]), label
    nodes = summary["nodes"]
    assert nodes["failed_on_purpose"] > 0 and nodes["kept_on_purpose"] > 0 and nodes["vanished"] > 0
    assert nodes["reconnects"] > 0 and nodes["registrations"] == nodes["simulated"] + nodes["reconnects"]
    _, metrics = scrape(server, 0)
    ended = sum(metrics[f'scheduler_jobs_total{{outcome="{outcome}"}}'] for outcome in ("result", "missing", "error"))
    assert ended == summary["total"]["jobs"] and metrics['scheduler_jobs_total{outcome="cancelled"}'] == 0
    # they came back with their ids: four nodes, no more
    assert offline_nodes(server, 4) == 4


def test_a_scheduler_that_is_not_there_gives_one_clear_line_and_status_2():
    port = free_port()
    result = fleet_simulate(None, "--url", f"ws://127.0.0.1:{port}", "--duration", "1", timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"cannot reach the scheduler at ws://127.0.0.1:{port}" in lines[0]
