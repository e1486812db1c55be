"""The bench's knobs, read once from the environment (``bench/README.md`` lists them).

``BENCH_QUICK=1`` makes every default small (one round, short windows, small fleets): a smoke run
whose figures are not comparable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
PLAIN_PUBSUB = "channels_redis.pubsub.RedisPubSubChannelLayer"
# The "before" of what was done for the throughput target, measured beside the shipped stack in
# every run (override or switch off with BENCH_VARIANTS): the plain pub/sub layer, where every
# frame goes through Redis even between two sockets of one process. Settings only.
DEFAULT_VARIANTS = f"plain-pubsub:CHANNEL_LAYER_BACKEND={PLAIN_PUBSUB}"


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    return float(raw) if raw else default


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    return int(raw) if raw else default


@dataclass(frozen=True)
class Params:
    pairs: int
    rounds: int
    sat_s: float
    sat_warmup_s: float
    lat_s: float
    lat_warmup_s: float
    count_jobs: int
    seq_jobs: int
    fleet_nodes: int
    fleet_concurrency: int
    heartbeat_rate: float
    pick_nodes: int
    pick_jobs: int
    pick_heartbeats: int
    pick_rounds: int
    profile: str  # auto (when a target is missed) | always | never
    profile_s: float
    out: Path
    variants: tuple[tuple[str, dict[str, str]], ...]
    watched_s: float  # the fleet watched: round trips per condition (unwatched, watched)
    watched_rate: float  # the fleet watched: round trips per second, one at a time
    storm_concurrency: int  # the fleet watched: nodes connecting at once in the storm
    fleet_repeat: int  # the fleet watched: calls per figure of a frame's and a scrape's CPU
    phases: tuple[str, ...]  # BENCH_PHASES: run only these (names, ``-`` or ``_``); empty for all

    @classmethod
    def from_env(cls) -> Params:
        quick = os.environ.get("BENCH_QUICK") == "1"
        return cls(
            pairs=env_int("BENCH_PAIRS", 50),
            rounds=env_int("BENCH_ROUNDS", 1 if quick else 5),
            sat_s=env_float("BENCH_SAT_S", 3 if quick else 5),
            sat_warmup_s=env_float("BENCH_SAT_WARMUP_S", 1),
            lat_s=env_float("BENCH_LAT_S", 3 if quick else 6),
            lat_warmup_s=env_float("BENCH_LAT_WARMUP_S", 1),
            count_jobs=env_int("BENCH_COUNT_JOBS", 200 if quick else 500),
            seq_jobs=env_int("BENCH_SEQ_JOBS", 300 if quick else 1500),
            fleet_nodes=env_int("BENCH_FLEET_NODES", 1000 if quick else 10000),
            fleet_concurrency=env_int("BENCH_FLEET_CONCURRENCY", 50),
            heartbeat_rate=env_float("BENCH_HEARTBEAT_RATE", 2000),
            pick_nodes=env_int("BENCH_PICK_NODES", 1000 if quick else 10000),
            pick_jobs=env_int("BENCH_PICK_JOBS", 500 if quick else 2500),
            pick_heartbeats=env_int("BENCH_PICK_HEARTBEATS", 500 if quick else 2500),
            pick_rounds=env_int("BENCH_PICK_ROUNDS", 10),
            profile=os.environ.get("BENCH_PROFILE", "auto"),
            profile_s=env_float("BENCH_PROFILE_S", 8),
            out=Path(os.environ.get("BENCH_OUT", BASE_DIR / "BENCHMARKS.md")),
            variants=parse_variants(os.environ.get("BENCH_VARIANTS", DEFAULT_VARIANTS)),
            watched_s=env_float("BENCH_WATCHED_S", 6 if quick else 20),
            watched_rate=env_float("BENCH_WATCHED_RATE", 20),
            storm_concurrency=env_int("BENCH_STORM_CONCURRENCY", 1000),
            fleet_repeat=env_int("BENCH_FLEET_REPEAT", 3 if quick else 5),
            phases=tuple(
                name.strip().replace("-", "_") for name in os.environ.get("BENCH_PHASES", "").split(",") if name.strip()
            ),
        )


def parse_variants(raw: str) -> tuple[tuple[str, dict[str, str]], ...]:
    """``name:VAR=value,VAR=value;name2:...``: more full-path stacks measured beside the shipped one."""
    variants = []
    for item in filter(None, (part.strip() for part in raw.split(";"))):
        name, _, assignments = item.partition(":")
        env = dict(pair.split("=", 1) for pair in assignments.split(",") if "=" in pair)
        variants.append((name.strip(), env))
    return tuple(variants)
