"""A job's story told for the dashboard's job lookup: what the dispatch scripts wrote (route,
attempts with the candidates each looked at, events, the ending), in words a person reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any


def _when(ms: int | None) -> str:
    if not ms:
        return "—"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _need_text(need: str) -> str:
    if "~" in need:
        a, b = need.split("~", 1)
        return f"{a} ⇄ {b} (two-way)"
    s, _, t = need.partition(">")
    return f"{s} → {t}"


def _candidates(raw: list[str]) -> list[dict[str, Any]]:
    found = []
    for item in raw:
        node_id, _, free = item.rpartition("=")
        found.append({"node": node_id, "free": int(free) if free.lstrip("-").isdigit() else free})
    return found


def _why(attempt: dict[str, Any], looked: list[dict[str, Any]]) -> str:
    """Why this attempt went where it did, from what the dispatch script saw."""
    reasons = []
    for entry in looked:
        if entry["pool"] == attempt["pool"]:
            break
        if entry["candidates"]:
            checked = ", ".join(f"{c['node']} ({c['free']} free)" for c in entry["candidates"])
            reasons.append(f"pool {entry['pool']} had no ready node with a free slot (checked {checked})")
        else:
            reasons.append(f"pool {entry['pool']} had no ready member")
    chosen = next((entry for entry in looked if entry["pool"] == attempt["pool"]), None)
    candidates = chosen["candidates"] if chosen else []
    free = next((c["free"] for c in candidates if c["node"] == attempt["node"]), None)
    strategy = attempt.get("strategy") or "random"
    if strategy == "affinity":
        pick = "the node of the turn's previous piece, still ready with a free slot (turn affinity)"
    elif strategy == "sticky" and candidates and candidates[0]["node"] == attempt["node"]:
        pick = "the session's previous node, still ready with a free slot (sticky)"
    elif strategy == "least_loaded":
        pick = f"the most free slots among the {len(candidates)} sampled (least_loaded)"
    elif strategy == "sticky":
        pick = "a random node with a free slot: the session's previous node was not available (sticky)"
    else:
        pick = "the first node with a free slot in a random order (random)"
    if free is not None:
        pick += f", {free} free"
    if attempt.get("attempt", 1) > 1:
        pick += "; nodes that already had the job were skipped"
    if attempt.get("turn") and strategy != "affinity":
        pick += f"; the turn's node could not take it ({attempt['turn']})"
    reasons.append(f"pool {attempt['pool']}: {pick}")
    return "; ".join(reasons) + "."


EVENT_TEXT = {
    "ejected": "{node} was ejected after failures in a row: no new job until {until}",
    "not_ejected": "{node} failed again, but was not ejected: it is one of the last ready nodes of {pool}",
    "timeout": "attempt {attempt} on {node} timed out ({code}); job_cancel timeout sent to it",
    "lost": "{node} was lost during attempt {attempt} (socket closed or lease expired)",
    "failed": "attempt {attempt} failed on {node} with {code}",
}


def _ending_text(ending: dict[str, Any], last_node: str | None) -> str:
    kind = ending.get("kind")
    node = ending.get("node")
    if kind == "result":
        text = f"translation_result from {node} (attempt {ending.get('attempt_id')})"
    elif kind == "missing":
        text = f"missing_result: {node} sent an empty result (attempt {ending.get('attempt_id')})"
    elif kind == "cancelled":
        return f"cancelled ({ending.get('reason', 'session closed')}); job_cancel sent to the node that held it"
    elif kind == "error":
        text = f"error {ending.get('code')}"
        if ending.get("message"):
            text += f": {ending['message']}"
        return text
    else:
        return str(kind)
    if node and last_node and node != last_node:
        text += f"; a late answer of an earlier attempt won, job_cancel completed sent to {last_node}"
    return text


def story_told(story: dict[str, str]) -> dict[str, Any]:
    """A job's story (as stored) in the terms the lookup page shows."""
    cut_ms = int(story.get("cut_ms") or 0)

    def after(ms: Any) -> int | None:
        return int(ms) - cut_ms if ms and cut_ms else None

    attempts = []
    for attempt in json.loads(story.get("attempts") or "[]"):
        looked = [
            {"pool": entry.get("pool"), "candidates": _candidates(entry.get("candidates") or [])}
            for entry in attempt.get("looked") or []
        ]
        attempts.append(
            {
                **attempt,
                "looked": looked,
                "why": _why(attempt, looked),
                "at": _when(attempt.get("at_ms")),
                "after_cut_ms": after(attempt.get("at_ms")),
            }
        )
    events = [
        {
            **event,
            "text": EVENT_TEXT.get(event.get("event", ""), "{event} on {node}").format_map(
                {"attempt": "?", "node": "?", "code": "", "until": _when(event.get("until_ms")), **event}
            ),
            "after_cut_ms": after(event.get("at_ms")),
        }
        for event in json.loads(story.get("events") or "[]")
    ]
    ending = json.loads(story["ending"]) if story.get("ending") else None
    last_node = attempts[-1]["node"] if attempts else None
    route = json.loads(story.get("route") or "[]")
    return {
        "job_id": story.get("job_id"),
        "session": story.get("session"),
        "trace": story.get("trace"),
        "utterance_index": story.get("utt"),
        "need": story.get("need", ""),
        "pair": _need_text(story.get("need", "")),
        "route": [{"pool": entry[0], "strategy": entry[1]} for entry in route],
        "cut": _when(cut_ms),
        "attempts": attempts,
        "nodes": [attempt["node"] for attempt in attempts],
        "events": events,
        "ending": ending,
        "ending_text": _ending_text(ending, last_node) if ending else "not ended yet",
        "ended": _when(int(story["ended_ms"])) if story.get("ended_ms") else "—",
        "ended_after_ms": after(story.get("ended_ms")),
    }
