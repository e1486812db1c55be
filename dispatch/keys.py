"""Every Redis key of live state, named in one place.

All keys start with ``SCHEDULER_REDIS_PREFIX`` so deployments and test runs can share a server.
The Lua scripts build the same names from the prefix they are given (see ``scripts/_lib.lua``);
``docs/architecture.md`` lists what each key holds.
"""

from __future__ import annotations

from django.conf import settings


def prefix() -> str:
    return settings.SCHEDULER_REDIS_PREFIX


def config() -> str:
    """hash: ``version`` (of the published pool config), ``json`` (compiled config), ``auto``."""
    return f"{prefix()}:config"


def routes() -> str:
    """hash: need (``zh>en`` or ``en~zh``) → JSON ``[[pool, strategy], ...]`` (admin pools)."""
    return f"{prefix()}:routes"


def slot_overrides() -> str:
    """hash: node id → slots set by an admin."""
    return f"{prefix()}:slots"


def node(node_id: str) -> str:
    """hash: one node's live record (status, slots, used, caps, pools, load, channel...)."""
    return f"{prefix()}:node:{node_id}"


def node_jobs(node_id: str) -> str:
    """set: the jobs whose current attempt this node holds."""
    return f"{prefix()}:node:{node_id}:jobs"


def node_times(node_id: str) -> str:
    """list: the node's last 100 processing times (ms, as it reported them), newest first."""
    return f"{prefix()}:node:{node_id}:times"


def nodes() -> str:
    """set: every node id that has a record (live or offline for 15 minutes)."""
    return f"{prefix()}:nodes"


def pool(name: str) -> str:
    """set: the pool's dispatchable members (connected, ready, not drained)."""
    return f"{prefix()}:pool:{name}"


def leases() -> str:
    """zset: connected node id → lease deadline (ms, Redis clock)."""
    return f"{prefix()}:leases"


def drained() -> str:
    """set: node ids drained until resumed (kept apart from node records, survives reconnects)."""
    return f"{prefix()}:drained"


def revoked_tokens() -> str:
    """zset: revoked node token id → when (ms): heartbeats of its nodes are refused, and the
    worker closes its nodes again for a while in case a close message was lost."""
    return f"{prefix()}:revoked"


def job(job_id: str) -> str:
    """hash: a job in flight with its ``job_assign`` body (audio included) until it ends."""
    return f"{prefix()}:job:{job_id}"


def deadlines() -> str:
    """zset: job id → deadline of its current attempt (ms, Redis clock)."""
    return f"{prefix()}:deadlines"


def story(job_id: str) -> str:
    """hash: what happened to a job (no audio), kept SCHEDULER_JOB_HISTORY_S after it ends."""
    return f"{prefix()}:story:{job_id}"


def session(session_id: str) -> str:
    """hash: a session's trace id, channel and last node (for ``sticky``)."""
    return f"{prefix()}:session:{session_id}"


def sessions() -> str:
    """zset: open session id → last activity (ms)."""
    return f"{prefix()}:sessions"


def metrics() -> str:
    """hash: fleet-wide counters written by the scripts, and the dispatch latency histogram
    (``dispatch_le:<ms>`` per bucket, not cumulative; ``dispatch_sum_ms``)."""
    return f"{prefix()}:metrics"


def worker(name: str) -> str:
    """string with a TTL: a scheduler_worker copy is alive."""
    return f"{prefix()}:worker:{name}"


def workers() -> str:
    """zset: scheduler_worker copy name → when its liveness runs out (ms, Redis clock)."""
    return f"{prefix()}:workers"


def session_jobs(session_id: str) -> str:
    """zset: a session's job ids → when placed (ms), kept while their stories can exist."""
    return f"{prefix()}:session:{session_id}:jobs"


def trace(trace_id: str) -> str:
    """set: the session ids a trace id named (it outlives the session's own hash)."""
    return f"{prefix()}:trace:{trace_id}"


def minute(number: int) -> str:
    """hash (observation, 20-minute TTL): jobs placed in that minute since the epoch,
    ``placed`` and ``placed:<pool>``."""
    return f"{prefix()}:minute:{number}"


def dispatch_latency(pool: str) -> str:
    """list (observation): the last 100 dispatch latencies (ms, cut → slot reserved) of a pool."""
    return f"{prefix()}:latency:{pool}"


def load_sample(second: int) -> str:
    """string (observation, TTL): the fleet's load as the worker saw it at that epoch second."""
    return f"{prefix()}:sample:{second}"


def auto_pools() -> str:
    """zset (score 0, ordered by name): the automatic pools that have at least one member,
    kept by ``set_membership`` in ``scripts/_lib.lua`` (the pool admin counts and pages them)."""
    return f"{prefix()}:auto_pools"
