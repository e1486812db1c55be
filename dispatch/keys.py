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


def fleet() -> str:
    """hash (observation): the fleet summary the worker computes once per interval for the
    whole deployment: ``totals``, ``pools``, ``minutes`` (JSON each), ``at_ms``, ``passes``."""
    return f"{prefix()}:fleet"


def fleet_claim() -> str:
    """string with a TTL: the worker copy computing the fleet summary this interval."""
    return f"{prefix()}:fleet:claim"


def fleet_view(digest: str) -> str:
    """string (observation, TTL): the node ids of one node-table view (filters and sort), in
    order, each padded to a fixed width, so a page is one GETRANGE."""
    return f"{prefix()}:fleet:view:{digest}"


def fleet_views_wanted() -> str:
    """zset: node-table view (JSON of its filters and sort) → when a viewer last asked (ms)."""
    return f"{prefix()}:fleet:wanted"


def loop_lag(process: str) -> str:
    """string (observation, TTL): a server process's event-loop lag histogram (JSON)."""
    return f"{prefix()}:looplag:{process}"


def loop_lags() -> str:
    """zset: server process name → when its published loop-lag histogram runs out (ms)."""
    return f"{prefix()}:looplags"


def room(code: str) -> str:
    """hash: a live room: ``id`` (uuid4), ``created_ms``, ``seq`` (joins so far, for join order)."""
    return f"{prefix()}:room:{code}"


def room_members(code: str) -> str:
    """hash: a room's members, session id → JSON entry (display name, preferred and effective
    language, raw voice preferences, channel, join time and order)."""
    return f"{prefix()}:room:{code}:members"


def rooms() -> str:
    """zset: live room code → its last activity (ms, Redis clock); the worker expires idle ones."""
    return f"{prefix()}:rooms"


def room_jobs(code: str) -> str:
    """zset: the jobs placed for a room code → when (ms), kept while their stories can exist
    (the job lookup by room code)."""
    return f"{prefix()}:room:{code}:jobs"


def turn(session_id: str, turn_id: str) -> str:
    """string with a TTL: the node that holds the latest piece of a session's unfinished turn
    (its later pieces go there while it can take them); deleted with the turn's last piece."""
    return f"{prefix()}:turn:{session_id}:{turn_id}"


def ejected(pool: str) -> str:
    """zset: the pool's members ejected after consecutive failures → until when (ms, Redis
    clock); read when another member would be ejected (at most half of a pool's ready nodes)."""
    return f"{prefix()}:ejected:{pool}"


def tenants() -> str:
    """hash: tenant name → JSON record (``enabled``, ``origins``, ``max_sessions``,
    ``audio_ms_per_day``), published from the database like the pools."""
    return f"{prefix()}:tenants"


def tenant_keys() -> str:
    """hash: live key id → JSON ``{tenant, secret}`` (the secret still sealed); revoked keys are absent."""
    return f"{prefix()}:tenant_keys"


def tenant_sessions(tenant: str) -> str:
    """zset: a tenant's open session ids → lease deadline (ms, Redis clock); its ``max_sessions``
    counts the entries not yet past their deadline."""
    return f"{prefix()}:tenant:{tenant}:sessions"


def usage(day: int) -> str:
    """hash: usage counters of UTC day ``day`` (days since the epoch), field ``<tenant>:<counter>``
    (``sessions``, ``jobs``, ``results``, ``missing``, ``errors``, ``cancelled``, ``audio_ms``,
    ``audio_ms_result``); the audio quota reads ``<tenant>:audio_ms``."""
    return f"{prefix()}:usage:{day}"


def tenant_keys_used() -> str:
    """hash: key id → when a ticket of it last opened a session (ms); rolled into the database."""
    return f"{prefix()}:tenant_keys_used"


def usage_rollup(slot: int) -> str:
    """string (TTL): a worker copy claimed this rollup slot (usage into the database)."""
    return f"{prefix()}:rollup:{slot}"


def auto_pools() -> str:
    """zset (score 0, ordered by name): the automatic pools that have at least one member,
    kept by ``set_membership`` in ``scripts/_lib.lua`` (the pool admin counts and pages them)."""
    return f"{prefix()}:auto_pools"
