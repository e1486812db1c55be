"""The configurations under test and the servers they run on.

Floors (``bench/floor_*.py``, one server per channel layer): a daphne echo, the naive Channels
relay of one job through each layer, the relay without channels' thread hop, and that one with the
design's two script calls. Full path: ``schedulerproj.server`` and ``scheduler_worker`` as
shipped, and one more stack per ``BENCH_VARIANTS`` entry.
"""

from __future__ import annotations

import os

from bench import loadgen, procs
from bench.knobs import BASE_DIR
from bench.phases import Bench, Config

LAYERS = ("default", "pubsub", "memory")
NOHOP_LABEL = "relay: shipped layer, no thread hop"
CALLS_LABEL = "relay: no thread hop + 2 script calls"
LAYER_LABELS = {
    "default": "relay: default layer",
    "pubsub": "relay: shipped layer",
    "memory": "relay: in-memory layer",
}


def bench_database_url() -> str:
    return os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{BASE_DIR / 'var' / 'bench' / 'db.sqlite3'}"


def full_env(child_env: dict[str, str], prefix: str, extra: dict[str, str]) -> dict[str, str]:
    """A full-path stack's environment: every setting at its default but its key prefix, open
    node auth and the bench's database (and a variant's ``extra``)."""
    return {
        **child_env,
        "DJANGO_SETTINGS_MODULE": "schedulerproj.settings",
        "SCHEDULER_REDIS_PREFIX": prefix,
        "SCHEDULER_NODE_AUTH": "open",
        "DATABASE_URL": bench_database_url(),
        **extra,
    }


def start(bench: Bench, child_env: dict[str, str]) -> None:
    """Start the floor servers and the full-path stacks, and list the configurations on them
    (in the order they take turns and fill the report's columns)."""
    prefix, floors, stacks = bench.prefix, bench.floors, bench.stacks
    for layer in LAYERS:
        floors[layer] = procs.floor_server(layer, child_env, f"{prefix}-floor-{layer}")
    stacks["full"] = procs.FullStack.start(full_env(child_env, f"{prefix}-full", {}), "scheduler")
    for name, extra in bench.params.variants:
        stacks[f"full:{name}"] = procs.FullStack.start(
            full_env(child_env, f"{prefix}-{name}", extra), f"scheduler-{name}"
        )
    bench.report.configs = [
        Config("echo", "daphne echo", loadgen.EchoPair, floors["memory"].ws, [floors["memory"].process], True),
        *(
            Config(f"relay-{layer}", LAYER_LABELS[layer], loadgen.RelayPair, floors[layer].ws,
                   [floors[layer].process], True)
            for layer in LAYERS
        ),
        Config("relay-pubsub-nohop", NOHOP_LABEL, loadgen.NoHopRelayPair, floors["pubsub"].ws,
               [floors["pubsub"].process], True),
        Config("relay-calls", CALLS_LABEL, loadgen.CallingRelayPair, floors["pubsub"].ws,
               [floors["pubsub"].process], True),
        *(
            Config(key, "full path (shipped)" if key == "full" else f"full path: {key[5:]}", loadgen.FullPair,
                   stack.ws, stack.processes, False)
            for key, stack in stacks.items()
        ),
    ]


async def open_pairs(bench: Bench) -> None:
    for config in bench.configs:
        config.pairs = await loadgen.open_pairs(config.kind, config.base, bench.params.pairs)


async def close_pairs(bench: Bench) -> None:
    for config in bench.configs:
        await loadgen.close_pairs(config.pairs)


def stop(bench: Bench) -> None:
    for floor in bench.floors.values():
        floor.process.stop()
    for stack in bench.stacks.values():
        stack.stop()
