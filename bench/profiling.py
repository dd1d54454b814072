"""`BENCH_PROFILE=1`: where the proxy spends its CPU under load, sampled by py-spy."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Any

from bench.settings import LOAD_CORE, PY, RESULTS, SECONDS
from bench.wrk import Target, lua_hot, run_wrk


def profile_proxy(target: Target, hot: str, run_dir: Path) -> dict[str, Any]:
    """py-spy, on the load core, samples the proxy during an extra cached c=32 wrk point (it pauses the
    proxy briefly per sample: that point's rate is not a result)."""
    spy = Path(PY).with_name("py-spy")
    if not spy.exists():
        return {"skipped": "py-spy not installed in the venv"}
    pid = target.pids()[0]
    out = RESULTS / "proxy-profile.raw"
    seconds = max(3, min(SECONDS, 10))
    argv = [
        "taskset",
        "-c",
        str(LOAD_CORE),
        str(spy),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(seconds),
    ]
    argv += ["--rate", "200", "--full-filenames", "--format", "raw", "--output", str(out)]
    spy_proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        point = run_wrk(target, lua_hot(hot), 32, seconds, run_dir, None, "profiled")
    finally:
        try:
            spy_proc.wait(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            os.kill(spy_proc.pid, signal.SIGKILL)
            spy_proc.wait(timeout=5)
    if not out.exists():
        return {"skipped": "py-spy wrote nothing"}
    return {"rps_while_sampled": point.rps, **summarize_profile(out)}


# Where a sample's time goes: the first frame from the top of the stack whose file names a part.
PARTS = (
    ("upstream hop (pool, httptools)", ("/proxy/upstream/pool", "/httptools/")),
    ("admission (authn, routes, policy)", ("/proxy/admit.py", "/proxy/auth/", "/proxy/authz/")),
    ("telemetry (access record, metrics)", ("/proxy/telemetry/",)),
    ("pipeline, headers, jobs, protocol", ("/proxy/http/", "/proxy/upstream/", "/proxy/jobs/", "/proxy/")),
    ("aiohttp server (parse, dispatch, response)", ("/aiohttp/", "/multidict/", "/yarl/")),
    ("asyncio", ("/asyncio/",)),
)
EVENT_LOOP = "event loop and sockets (uvloop)"


def _short(frame: str) -> str:
    """`func (/abs/path/site-packages/aiohttp/x.py:12)` as `func (aiohttp/x.py)`."""
    frame = re.sub(r":\d+\)$", ")", frame)
    return re.sub(r"\((?:[^()]*/(?:site-packages|lib/python3\.\d+|work/main)/)", "(", frame)


def part_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        if "asyncio/runners.py" in frame and frame is frames[-1]:
            return EVENT_LOOP  # the loop itself, in C: polling, reading and writing sockets
        for part, needles in PARTS:
            if any(n in frame for n in needles):
                return part
    return EVENT_LOOP


def summarize_profile(raw: Path) -> dict[str, Any]:
    """Per function (line numbers folded): share of samples on top of the stack (self) and anywhere on
    it (inclusive), from py-spy's collapsed stacks; and per part of the request path (`split`)."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    parts: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        raw_frames = stack.split(";")
        frames = [_short(f) for f in raw_frames]
        total += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for f in set(frames):
            incl[f] = incl.get(f, 0) + count
        part = part_of(raw_frames)
        parts[part] = parts.get(part, 0) + count

    def top(d: dict[str, int], n: int) -> list[tuple[str, float]]:
        return [(f, round(100 * c / total, 1)) for f, c in sorted(d.items(), key=lambda kv: -kv[1])[:n]]

    return {
        "samples": total,
        "split_pct": top(parts, len(PARTS) + 1),
        "self_pct": top(own, 25),
        "inclusive_pct": top(incl, 60),
    }
