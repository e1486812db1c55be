"""``BENCHMARKS.md`` as a whole: the header (machine, commit, workload), the targets, the table of
floors and the full path, the phases' own sections by their place, the variants side by side, and
how to rerun; and the summary printed at the end of a run."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path

from bench import ceiling, targets
from bench.knobs import BASE_DIR, PLAIN_PUBSUB
from bench.markdown import fmt, ratio
from bench.phase_redis_commands import top_level
from bench.phases import Phase, Report
from fleetsim.frames import AUDIO, AUDIO_B64

VARIANTS_PLACE = 50
VARIANT_NOTES = {
    f"CHANNEL_LAYER_BACKEND={PLAIN_PUBSUB}": "every frame is PUBLISHed and pushed back, even to a consumer in the "
    "same process (the shipped `dispatch.layers.LocalFirstPubSubChannelLayer` hands those straight to its queue)",
}
SHORT = {"echo": "echo", "relay-default": "default relay", "relay-pubsub": "shipped relay",
         "relay-pubsub-nohop": "no-hop relay", "relay-memory": "in-memory relay", "relay-calls": "no-hop relay + 2 calls"}
RELAYS = ("relay-default", "relay-pubsub", "relay-pubsub-nohop", "relay-calls", "relay-memory")


def git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=BASE_DIR, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def redis_where() -> str:
    return "unix socket" if os.environ.get("REDIS_URL", "").startswith("unix:") else "TCP"


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def header(report: Report) -> list[str]:
    params = report.params
    commit = git("rev-parse", "--short", "HEAD") + ("+uncommitted changes" if git("status", "--porcelain") else "")
    workload = [
        f"Workload: {params.pairs} browser/node pairs; each round trip carries one utterance of 1 s of audio "
        f"({len(AUDIO):,} bytes, 50 Opus packets; {len(AUDIO_B64):,} base64 characters) in one `utterance` frame, and the "
        f"node answers at once with a `job_result`. Saturation: closed loop, {params.sat_s:g} s windows after "
        f"{params.sat_warmup_s:g} s of warm-up. Latency: a fixed offered load of **{report.rate:.0f} round trips/s** "
        f"(half the default-layer relay's saturation rate in this run), {params.lat_s:g} s windows, measured from each "
        f"round trip's scheduled start. Each figure is the median of {params.rounds} rounds, the configurations taking "
        f"turns within each round. CPU is `utime+stime` of the server process from `/proc`; Redis CPU is `INFO cpu`; "
        f"Redis commands are `INFO commandstats` deltas (every command, script internals included) and a MONITOR "
        f"capture for top-level calls.",
        "",
    ]
    return [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`python -m bench.run`) on {report.started:%Y-%m-%d %H:%M} UTC in "
        f"{report.seconds / 60:.1f} min; commit {commit}; {cpu_model()} × {os.cpu_count()} (shared), Python "
        f"{platform.python_version()}, Redis {report.redis_version} ({redis_where()}); load average "
        f"{report.load_before} before, {report.load_after} after.",
        "",
        *(workload if not report.ran or "sat" in report.ran else []),
        "## Targets",
        "",
        "| target | measured in this run | met |",
        "|---|---|---|",
        *(f"| {name} | {measured} | {'—' if met is None else ('**yes**' if met else '**no**')} |"
          for name, measured, met in targets.rows(report)),
        "",
    ]


def floors_and_full_path(report: Report) -> list[str]:
    """One column per configuration, from the saturation, latency and Redis commands phases."""
    configs = report.configs
    full, shipped, default = report.config("full"), report.config("relay-pubsub"), report.config("relay-default")
    f = full.figure
    lines = ["## Floors and the full path", "",
             "| | " + " | ".join(c.label for c in configs) + " | full path ÷ floor |",
             "|---" * (len(configs) + 2) + "|"]

    def row(label: str, phase: str, name: str, digits: int, ratios: str) -> None:
        cells = [fmt(c.figure(phase, name), digits) for c in configs]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {ratios} |")

    def ratios(phase: str, name: str, keys: tuple[str, ...]) -> str:
        return "; ".join(f"{ratio(f(phase, name), report.config(k).figure(phase, name))} {SHORT[k]}" for k in keys)

    rate = report.rate
    row("round trips (jobs) per second at saturation", "sat", "rate", 0, ratios("sat", "rate", (*RELAYS, "echo")))
    row(f"round-trip p50 at {rate:.0f}/s (ms)", "lat", "p50", 2,
        ratios("lat", "p50", ("relay-pubsub", "relay-pubsub-nohop", "relay-calls", "echo")))
    row(f"round-trip p99 at {rate:.0f}/s (ms)", "lat", "p99", 2,
        ratios("lat", "p99", ("relay-pubsub", "relay-pubsub-nohop", "relay-calls", "echo")))
    row("round-trip p50 at saturation (ms)", "sat", "p50", 1,
        ratios("sat", "p50", ("relay-pubsub", "relay-pubsub-nohop", "relay-calls")))
    row("server CPU per round trip at saturation (ms)", "sat", "server_cpu_ms", 3,
        ratios("sat", "server_cpu_ms", (*RELAYS, "echo")))
    row(f"server CPU per round trip at {rate:.0f}/s (ms)", "lat", "server_cpu_ms", 3,
        ratios("lat", "server_cpu_ms", ("relay-pubsub", "relay-pubsub-nohop", "relay-calls")))
    row("server CPU used at saturation (cores)", "sat", "server_cores", 2, "")
    row("worker CPU per job at saturation (ms)", "sat", "worker_cpu_ms", 3, "")
    row("Redis CPU per round trip at saturation (ms)", "sat", "redis_cpu_ms", 3,
        ratios("sat", "redis_cpu_ms", ("relay-default", "relay-pubsub")))
    cells = [fmt(top_level(c), 2) for c in configs]
    lines.append("| Redis commands per round trip, top-level calls (MONITOR) | " + " | ".join(cells) + " | "
                 + f"{ratio(top_level(full), top_level(default))} default relay; "
                 f"{ratio(top_level(full), top_level(shipped))} shipped relay |")
    row("Redis commands per round trip, all (INFO commandstats, script internals included)", "sat", "redis_calls", 1,
        ratios("sat", "redis_calls", ("relay-default", "relay-pubsub")))
    row("Redis time per round trip (µs, commandstats)", "sat", "redis_usec", 0,
        ratios("sat", "redis_usec", ("relay-default", "relay-pubsub")))
    row("load generator CPU at saturation (cores)", "sat", "loadgen_cores", 2, "")
    failed = [sum(w["failed"] for w in c.windows.get("sat", []) + c.windows.get("lat", [])) for c in configs]
    lines.append("| round trips failed or lost (all windows) | " + " | ".join(f"{x:.0f}" for x in failed) + " | |")
    calls = report.config("relay-calls")
    s_p50, c_p50 = shipped.figure("lat", "p50"), calls.figure("lat", "p50")
    n_p50 = report.config("relay-pubsub-nohop").figure("lat", "p50")
    lines += [
        "",
        "Ratios divide like by like: latency by latency, CPU by CPU, counts by counts. Redis commands are per "
        "round trip of the whole system, so the full path's include the worker's own ticks (a few per second).",
        "",
        f"Reading the latency: at {rate:.0f}/s the relay built like our consumers (no thread hop) answers in "
        f"{n_p50:.2f} ms p50; the same relay with one Redis script call before each of its two sends, the two round "
        f"trips our design makes per job (pick-and-reserve, finish) and no other work, answers in {c_p50:.2f} ms "
        f"({ratio(c_p50, s_p50)} the shipped layer's naive relay, the target's floor). The full path is "
        f"{ratio(f('lat', 'p50'), c_p50)} that relay with calls: what remains is the work inside the two scripts "
        f"(Redis time per job {fmt(f('sat', 'redis_usec'), 0)} µs against {fmt(calls.figure('sat', 'redis_usec'), 0)} "
        "µs for the two empty calls), the three frames the protocol adds per job (`ui_event` DISPATCHED, ASR_FINAL "
        "and NMT_DONE), and our consumers' own work (decoding, checking the audio is base64, building the frames).",
        "",
    ]
    return lines


def variants(report: Report) -> list[str]:
    """The full-path stacks of ``BENCH_VARIANTS`` beside the shipped one."""
    fulls = [c for c in report.configs if not c.floor]
    if len(fulls) < 2:
        return []
    full = report.config("full")
    d_rate, m_rate = report.config("relay-default").figure("sat", "rate"), report.config("relay-memory").figure("sat", "rate")
    s_p50 = report.config("relay-pubsub").figure("lat", "p50")
    lines = [
        "## What was tried: variants of the full path, side by side in this run",
        "",
        "Each variant is another `schedulerproj.server` + worker with one setting changed; no code of ours "
        "differs. Medians of the same rounds as above.",
        "",
        "| full path | what differs | jobs/s at saturation | ÷ default relay | ÷ in-memory relay "
        f"| server CPU per job (ms) | p50 at {report.rate:.0f}/s (ms) | p50 ÷ shipped relay |",
        "|---|---|---|---|---|---|---|---|",
    ]
    settings = dict(report.params.variants)
    for c in fulls:
        env = settings.get(c.key[5:], {})
        what = "; ".join(VARIANT_NOTES.get(f"{k}={v}", f"`{k}={v}`") for k, v in env.items()) or "as shipped"
        rate, p50 = c.figure("sat", "rate"), c.figure("lat", "p50")
        lines.append(f"| {c.label} | {what} | {rate:.0f} | {ratio(rate, d_rate)} | {ratio(rate, m_rate)} "
                     f"| {fmt(c.figure('sat', 'server_cpu_ms'), 3)} | {fmt(p50)} | {ratio(p50, s_p50)} |")
    cpu0 = full.figure("sat", "server_cpu_ms")
    nohop = report.config("relay-pubsub-nohop").figure("sat", "server_cpu_ms")
    lines += [
        "",
        f"Reading: at saturation the one server process is the bottleneck (about "
        f"{full.figure('sat', 'server_cores'):.2f} cores of 2 shared; Redis uses "
        f"{full.figure('sat', 'redis_cores'):.2f}), so jobs/s follows server CPU per job: "
        f"{cpu0:.3f} ms as shipped, against {nohop:.3f} ms for the bare relay through the same layer built "
        "like our consumers (no thread hop). "
        + " ".join(
            f"{c.label[len('full path: '):]}: {c.figure('sat', 'server_cpu_ms') - cpu0:+.3f} ms of server CPU per "
            f"job against the shipped stack ({(c.figure('sat', 'server_cpu_ms') - cpu0) / cpu0:+.0%}), "
            f"{ratio(c.figure('sat', 'rate'), full.figure('sat', 'rate'))} its jobs/s."
            for c in fulls[1:]
        ),
        "",
    ]
    return lines


def rerun() -> list[str]:
    return [
        "## How to read and rerun",
        "",
        "`make bench` (about 15 minutes on 2 cores). Knobs (environment): `BENCH_ROUNDS`, `BENCH_SAT_S`, `BENCH_LAT_S`, "
        "`BENCH_PAIRS`, `BENCH_SEQ_JOBS`, `BENCH_FLEET_NODES`, `BENCH_PICK_NODES`, `BENCH_PROFILE=auto|always|never`, "
        "`BENCH_VARIANTS='name:VAR=value,...;...'` (more full-path stacks with other settings, measured side by side), "
        "`BENCH_WATCHED_S`, `BENCH_WATCHED_RATE`, `BENCH_STORM_CONCURRENCY` (the fleet watched), `BENCH_PHASES=a,b` "
        "(only those phases), `BENCH_QUICK=1` (a short smoke run). Servers' logs: `var/bench/*.log`. See "
        "`bench/README.md`.",
        "",
    ]


def render(report: Report, phases: Sequence[Phase]) -> str:
    """The report of the phases that ran: the table of floors and the full path and the variants
    when saturation ran (with latency and the Redis commands, for a whole run)."""
    sections = [(phase.place, phase.section) for phase in phases if phase.section is not None]
    sections.append((ceiling.PLACE, ceiling.section))
    whole = {"sat", "lat", "commands"} <= set(report.ran) or not report.ran
    if whole:
        sections.append((VARIANTS_PLACE, variants))
    lines = header(report) + (floors_and_full_path(report) if whole else partial(report))
    for _, section in sorted(sections, key=lambda placed: placed[0]):
        lines += section(report)
    return "\n".join(lines + rerun())


def partial(report: Report) -> list[str]:
    return [f"Only some phases ran (`BENCH_PHASES`): {', '.join(report.ran)}. Not a whole `make bench`.", ""]


def console_table(report: Report) -> str:
    lines = ["", "target | measured | met", "---"]
    for name, measured, met in targets.rows(report):
        lines.append(f"{name} | {measured} | {'-' if met is None else ('yes' if met else 'NO')}")
    if report.ran and "sat" not in report.ran:
        return "\n".join(lines)
    lines += ["", f"{'configuration':<48} {'rt/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/rt':>10} {'Redis cmds/rt':>14}"]
    for c in report.configs:
        lines.append(f"{c.label:<48} {c.figure('sat', 'rate'):8.0f} {c.figure('lat', 'p50'):8.2f} "
                     f"{c.figure('lat', 'p99'):8.2f} {c.figure('sat', 'server_cpu_ms'):10.3f} "
                     f"{c.figure('sat', 'redis_calls'):14.1f}")
    return "\n".join(lines)

