"""What to simulate (``Plan``), and the command line that says it (``add_arguments``,
``plan_from``). Option values that make no sense raise ``OptionError`` with a sentence naming
the option.
"""

from __future__ import annotations

import argparse
import random
import re
from dataclasses import dataclass, field
from typing import Any

from fleetsim.browser import LanguagePair
from fleetsim.node import Behaviour
from fleetsim.wire import ws_base

# The server cuts an utterance at SCHEDULER_MAX_UTTERANCE_MS (10 s by default); a longer one would
# become several jobs, and each said utterance must be exactly one.
MAX_UTTERANCE_MS = 10_000
LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(_[A-Za-z0-9]{2,8})?$")  # zh, yue, zh_TW (a "-" makes a pair)


class OptionError(ValueError):
    pass


@dataclass(frozen=True)
class Plan:
    """A simulated fleet: its nodes, its sessions and how long they talk."""

    url: str
    token: str | None = None
    nodes: int = 3
    node_languages: list[str] = field(default_factory=lambda: ["zh", "en"])
    slots: int | None = 4
    behaviour: Behaviour = Behaviour(service_ms=(500, 1100))
    flaky: int | None = None  # how many nodes the failure rates apply to (None: all)
    sessions: int = 4
    pairs: list[tuple[LanguagePair, float]] = field(default_factory=lambda: [(LanguagePair("zh", "en"), 1.0)])
    two_way: float = 0.0
    talk_every_s: float = 3.0
    utterance_ms: int = 1000
    utterance_frames: bool = False
    duration_s: float = 0.0  # 0: until interrupted
    drain_s: float = 30.0
    seed: int | None = None
    live_every_s: float = 1.0

    def session_pairs(self, rng: random.Random) -> list[LanguagePair]:
        """Each session's pair: the pairs shared out by weight (largest remainders), then the
        share ``two_way`` of sessions made two-way, drawn with ``rng``."""
        total = sum(weight for _, weight in self.pairs)
        quotas = [(self.sessions * weight / total, pair) for pair, weight in self.pairs]
        counts = [int(quota) for quota, _ in quotas]
        by_remainder = sorted(range(len(quotas)), key=lambda i: quotas[i][0] - counts[i], reverse=True)
        for i in by_remainder[: self.sessions - sum(counts)]:
            counts[i] += 1
        chosen = [pair for count, (_, pair) in zip(counts, quotas, strict=True) for _ in range(count)]
        two_way = set(rng.sample(range(len(chosen)), round(self.two_way * len(chosen))))
        return [
            LanguagePair(pair.src, pair.tgt, two_way=True) if i in two_way else pair for i, pair in enumerate(chosen)
        ]


def parse_languages(text: str) -> tuple[list[str], list[tuple[LanguagePair, float]] | None]:
    """``zh,en,ja`` → the languages; ``zh-en:20,en-de:5`` (weights optional, 1 by default) → the
    languages named and the weighted directed pairs."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise OptionError("--languages: name at least one language or pair")
    if not any("-" in item.split(":")[0] or ":" in item for item in items):
        for lang in items:
            _check_language(lang)
        if len(set(items)) < 2:
            raise OptionError("--languages: a session needs two different languages")
        return list(dict.fromkeys(items)), None
    mix: list[tuple[LanguagePair, float]] = []
    for item in items:
        name, _, weight_text = item.partition(":")
        src, sep, tgt = name.partition("-")
        if not sep:
            raise OptionError(f"--languages: {item!r} is not a pair such as zh-en:20 (a mix names pairs only)")
        _check_language(src)
        _check_language(tgt)
        if src == tgt:
            raise OptionError(f"--languages: {item!r} pairs a language with itself")
        try:
            weight = float(weight_text) if weight_text else 1.0
        except ValueError:
            raise OptionError(f"--languages: the weight of {item!r} is not a number") from None
        if weight <= 0:
            raise OptionError(f"--languages: the weight of {item!r} must be above 0")
        mix.append((LanguagePair(src, tgt), weight))
    languages = list(dict.fromkeys(lang for pair, _ in mix for lang in (pair.src, pair.tgt)))
    return languages, mix


def _check_language(lang: str) -> None:
    if not LANGUAGE.match(lang):
        raise OptionError(f"--languages: {lang!r} is not a language code such as zh or en")


def parse_spread(text: str, option: str = "--service-ms") -> tuple[float, float]:
    """``800±300`` (or ``800+-300``) → (500, 1100); ``800`` → (800, 800); ``500-1100`` → (500, 1100)."""
    spec = text.strip().replace("+-", "±").replace("+/-", "±")
    try:
        if "±" in spec:
            middle, spread = (float(part) for part in spec.split("±"))
            low, high = middle - spread, middle + spread
        elif "-" in spec.lstrip("-"):
            low, high = (float(part) for part in spec.split("-"))
        else:
            low = high = float(spec)
    except ValueError:
        raise OptionError(f"{option}: {text!r} is not a time such as 800±300, 800 or 500-1100") from None
    if low < 0 or high < low:
        raise OptionError(f"{option}: {text!r} must stay at or above 0, the low end first")
    return low, high


def _share(options: dict[str, Any], name: str) -> float:
    value = float(options[name])
    if not 0 <= value <= 1:
        raise OptionError(f"--{name.replace('_', '-')}: a share between 0 and 1, not {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser, *, url: str, token_hint: str) -> None:
    """The command line (``url``: the default scheduler; ``token_hint``: where the default
    token comes from)."""
    group = parser.add_argument_group("scheduler")
    group.add_argument("--url", default=url, help=f"the scheduler's base URL (default {url})")
    group.add_argument("--token", default=None, help=f"the nodes' token (default: {token_hint})")
    group = parser.add_argument_group("nodes")
    group.add_argument("--nodes", type=int, default=3, help="simulated nodes (default 3; 0 for browsers only)")
    group.add_argument("--node-languages", default=None,
                       help="languages the nodes serve, comma-separated (default: every language of --languages)")
    group.add_argument("--slots", type=int, default=4, help="job slots per node, sent as max_concurrent_jobs (default 4)")
    group.add_argument("--service-ms", default="800±300",
                       help="a node's time per job, uniform: 800±300 (or 800+-300), 500-1100 or 800 (default 800±300)")
    group.add_argument("--fail-rate", type=float, default=0.0, help="share of jobs a node fails (PROCESSING_ERROR)")
    group.add_argument("--timeout-rate", type=float, default=0.0,
                       help="share of jobs a node never answers (the scheduler times the attempt out)")
    group.add_argument("--drop-rate", type=float, default=0.0,
                       help="share of jobs on which a node vanishes (socket cut) and reconnects with its id 1-3 s later")
    group.add_argument("--flaky", type=int, default=None,
                       help="how many nodes the three rates apply to (default: all of them)")
    group = parser.add_argument_group("browsers")
    group.add_argument("--sessions", type=int, default=4, help="simulated browsers, one session each (default 4)")
    group.add_argument("--languages", default="zh,en",
                       help="languages the sessions use (zh,en,ja: their ordered pairs), or a weighted mix of "
                            "pairs such as zh-en:20,en-de:5 (default zh,en)")
    group.add_argument("--pairs", type=int, default=None,
                       help="with a language list: how many of its ordered pairs the sessions use (default all)")
    group.add_argument("--two-way", type=float, default=0.0,
                       help='share of sessions that are two-way (src_lang "auto") on their pair (default 0)')
    group.add_argument("--talk-every", type=float, default=3.0,
                       help="seconds from one utterance's start to the next in a session, ±25%% (default 3)")
    group.add_argument("--utterance-ms", type=int, default=1000,
                       help=f"audio per utterance, 20 to {MAX_UTTERANCE_MS} ms (default 1000: one real utterance)")
    group.add_argument("--utterance-frames", action="store_true",
                       help="send utterance frames instead of streaming audio_chunk frames in real time")
    group = parser.add_argument_group("run")
    group.add_argument("--duration", type=float, default=0.0,
                       help="seconds of talking, then wait for the last jobs and stop (default 0: until Ctrl-C)")
    group.add_argument("--drain", type=float, default=30.0,
                       help="after the talking, how long to wait for the last jobs to end (default 30)")
    group.add_argument("--seed", type=int, default=None, help="seed of every random choice, for a repeatable run")
    group.add_argument("--live-every", type=float, default=None,
                       help="seconds between live lines (default 1 on a terminal, 10 otherwise; 0: none)")
    group.add_argument("--json", default=None, metavar="PATH", help="also write the summary as JSON to PATH (- for stdout)")


def plan_from(options: dict[str, Any], *, token: str | None, interactive: bool) -> Plan:
    """The plan a parsed command line asks for; ``token`` when ``--token`` is not given."""
    languages, mix = parse_languages(options["languages"])
    rng = random.Random(options["seed"])
    if mix is None:
        pairs = [LanguagePair(s, t) for s in languages for t in languages if s != t]
        if options["pairs"] is not None:
            if not 1 <= options["pairs"] <= len(pairs):
                raise OptionError(f"--pairs: between 1 and {len(pairs)} for {len(languages)} languages")
            pairs = rng.sample(pairs, options["pairs"])
        mix = [(pair, 1.0) for pair in pairs]
    elif options["pairs"] is not None:
        raise OptionError("--pairs: a mix names its pairs already; use it with a language list")
    node_languages = languages
    if options["node_languages"]:
        node_languages = [lang.strip() for lang in options["node_languages"].split(",") if lang.strip()]
        for lang in node_languages:
            if not LANGUAGE.match(lang):
                raise OptionError(f"--node-languages: {lang!r} is not a language code such as zh or en")
    for name in ("nodes", "sessions"):
        if options[name] < 0:
            raise OptionError(f"--{name}: 0 or more")
    if options["slots"] < 1:
        raise OptionError("--slots: 1 or more")
    if not 20 <= options["utterance_ms"] <= MAX_UTTERANCE_MS:
        raise OptionError(f"--utterance-ms: between 20 and {MAX_UTTERANCE_MS} (a longer one is cut into several jobs)")
    if options["talk_every"] <= 0:
        raise OptionError("--talk-every: more than 0 seconds")
    if options["duration"] < 0 or options["drain"] < 0:
        raise OptionError("--duration and --drain: 0 or more seconds")
    if options["flaky"] is not None and not 0 <= options["flaky"] <= options["nodes"]:
        raise OptionError("--flaky: between 0 and --nodes")
    rates = {name: _share(options, name) for name in ("fail_rate", "timeout_rate", "drop_rate")}
    if sum(rates.values()) > 1:
        raise OptionError("--fail-rate, --timeout-rate and --drop-rate add up to more than 1")
    live_every = options["live_every"]
    if live_every is None:
        live_every = 1.0 if interactive else 10.0
    return Plan(
        url=ws_base(options["url"]),
        token=options["token"] or token,
        nodes=options["nodes"],
        node_languages=node_languages,
        slots=options["slots"],
        behaviour=Behaviour(
            service_ms=parse_spread(options["service_ms"]), fail_rate=rates["fail_rate"],
            timeout_rate=rates["timeout_rate"], drop_rate=rates["drop_rate"],
        ),
        flaky=options["flaky"],
        sessions=options["sessions"],
        pairs=mix,
        two_way=_share(options, "two_way"),
        talk_every_s=options["talk_every"],
        utterance_ms=options["utterance_ms"],
        utterance_frames=options["utterance_frames"],
        duration_s=options["duration"],
        drain_s=options["drain"],
        seed=options["seed"],
        live_every_s=max(0.0, live_every),
    )
