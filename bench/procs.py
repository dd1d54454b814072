"""Processes and the CPU they use: every process started here is recorded and stopped by its pid; the
system under test and the load are kept apart by core pinning; CPU time is read from /proc."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.settings import ROOT, log
from devkit.http import http_get


def autogroup_nice(pid: int | str, value: int | None = None) -> int | None:
    """Read (and with `value`, set) the nice value of `pid`'s autogroup; None where there is none."""
    path = Path(f"/proc/{pid}/autogroup")
    try:
        if value is not None:
            path.write_text(str(value))
        return int(path.read_text().split("nice")[1])
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class Started:
    name: str
    proc: subprocess.Popen[bytes]


class Processes:
    def __init__(self) -> None:
        self.started: list[Started] = []

    def start(self, name: str, argv: list[str], log_path: Path, **kw: Any) -> subprocess.Popen[bytes]:
        out = open(log_path, "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, **kw)
        out.close()
        self.started.append(Started(name, proc))
        return proc

    def stop_all(self) -> None:
        for s in reversed(self.started):
            self._stop(s)
        self.started.clear()

    def stop_one(self, name: str) -> None:
        for s in [s for s in self.started if s.name == name]:
            self._stop(s)
            self.started.remove(s)

    @staticmethod
    def _stop(s: Started) -> None:
        if s.proc.poll() is None:
            os.kill(s.proc.pid, signal.SIGTERM)
            try:
                s.proc.wait(timeout=40)  # a supervisor waits for its workers' grace period
            except subprocess.TimeoutExpired:
                log(f"{s.name} (pid {s.proc.pid}) ignored SIGTERM for 40 s: SIGKILL")
                os.kill(s.proc.pid, signal.SIGKILL)
                s.proc.wait(timeout=5)


def wait_until_ok(url: str, what: str, proc: subprocess.Popen[bytes] | None, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready")
        try:
            status, body = http_get(url, timeout=1)
            if status == 200:
                return
            last = f"{status} {body[:200]!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready after {seconds:g} s ({last})")


def pin(pid: int, core: int) -> None:
    """Move every thread of `pid` to `core`."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(tid), {core})


# CPU accounting from /proc

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the comm field: state(0) ... utime(11) stime(12) cutime(13) cstime(14)
        total += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return total / CLK_TCK


def children_of(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                out.append(int(entry))
    return out


def core_times() -> dict[int, tuple[int, int]]:
    """core -> (busy jiffies, total jiffies)"""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *vals = line.split()
            nums = [int(v) for v in vals[:8]]
            idle = nums[3] + nums[4]
            out[int(name[3:])] = (sum(nums) - idle, sum(nums))
    return out


def core_busy(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]) -> dict[int, float]:
    busy = {}
    for core in before:
        db, dt = after[core][0] - before[core][0], after[core][1] - before[core][1]
        busy[core] = round(100.0 * db / dt, 1) if dt else 0.0
    return busy
