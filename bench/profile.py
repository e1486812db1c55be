"""A py-spy profile of a server process while it is saturated, summed up for BENCHMARKS.md.

``py-spy record --format raw`` writes one collapsed stack per line (``frame;frame;... count``,
each frame ``function (file:line)``). Each sample is charged to the first frame, from the leaf up,
whose file belongs to a known part of the stack (so a library's own work counts for that library,
and our code counts only for what it does itself, stdlib helpers it calls included); asyncio's
frames count for their caller. Inclusive shares are listed per function. Under uvloop a
coroutine's stack starts at the coroutine (C code resumes it), so stacks are partial. A native
profile (C frames too) charges every sample taken inside the garbage collector to it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+)(?::\d+)?\)$")

# (part, pattern in the file path); first match wins, so put narrow patterns first.
ASYNCIO = "asyncio (tasks, queues, streams) when no caller above is known"
GC = "Python's cyclic garbage collector (gc_collect_main; native profiles only)"
LOOP_IN_C = "event loop in C (uvloop: polling, callbacks, socket reads and writes)"
PARTS = [
    ("logging (stdlib logging + schedulerproj/logs.py)", ("/logging/", "/schedulerproj/logs.py")),
    ("JSON encode/decode (msgspec, json)", ("/msgspec/", "/json/")),
    ("redis-py client", ("/redis/",)),
    ("channels_redis layer", ("/channels_redis/",)),
    ("channels consumer machinery", ("/channels/",)),
    ("asgiref (thread hop, sync_to_async)", ("/asgiref/",)),
    ("daphne", ("/daphne/",)),
    ("autobahn (WebSocket framing)", ("/autobahn/",)),
    ("Twisted", ("/twisted/",)),
    ("Django", ("/django/",)),
    ("our code (dispatch/, nodes/, pools/, and the stdlib it calls)", ("/dispatch/", "/nodes/", "/pools/")),
    (ASYNCIO, ("/asyncio/", "/uvloop/")),
]


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


@dataclass
class Profile:
    samples: int = 0
    parts: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)
    leaf: Counter[str] = field(default_factory=Counter)
    error: str = ""


def record(pid: int, seconds: float, output: Path, rate: int = 200, native: bool = False) -> subprocess.Popen[bytes] | None:
    """``native``: C frames too (the interpreter's own work, its garbage collector among it), which
    py-spy can only take by pausing the process at each sample."""
    tool = py_spy()
    if tool is None:
        return None
    return subprocess.Popen(
        [tool, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(rate),
         "--format", "raw", "--output", str(output), *(["--native"] if native else ["--nonblocking"])],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )


# A server process's own frames under every sample: left out of the tables of functions.
ROOT_FRAMES = (
    "_run_module_as_main ", "_run_code ", "<module> (schedulerproj/server.py)", "main (schedulerproj/server.py)",
    "Server.run (daphne/server.py)", "AsyncioSelectorReactor.run ",
)

PROJECT_DIR = str(Path(__file__).resolve().parent.parent)


def _name(frame: str) -> tuple[str, str]:
    match = FRAME.match(frame.strip())
    if match is None:
        return frame.strip(), ""
    file = match["file"]
    for marker in ("site-packages/", f"{PROJECT_DIR}/", "lib/python3.11/", "lib/python3.12/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{match['func']} ({file})", "/" + match["file"].lstrip("/")


def summarise(path: Path) -> Profile:
    profile = Profile()
    if not path.exists():
        profile.error = "py-spy wrote no profile"
        return profile
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_name(frame) for frame in stack.split(";") if frame]
        profile.samples += count
        if frames:
            profile.leaf[frames[-1][0]] += count
        for name in {name for name, _ in frames}:
            profile.inclusive[name] += count
        part = "other (interpreter, stdlib)"
        python = [name for name, file in frames if file.endswith(".py")]
        if python and python[-1].startswith("AsyncioSelectorReactor.run "):
            # Twisted's run() only calls uvloop's run_forever: its self time is uvloop's C code.
            profile.parts[LOOP_IN_C] += count
            continue
        if any(name.startswith("gc_collect") for name, _ in frames):
            profile.parts[GC] += count  # whatever allocated when the collector ran
            continue
        for _, file in reversed(frames):
            found = next((label for label, patterns in PARTS if any(p in file for p in patterns)), None)
            if found == ASYNCIO:
                # asyncio's streams and tasks work for whoever called them: charge the caller
                # when it is known, asyncio itself only when nothing above is.
                if part == "other (interpreter, stdlib)":
                    part = ASYNCIO
                continue
            if found is not None:
                part = found
                break
        profile.parts[part] += count
    return profile
