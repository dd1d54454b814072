"""Ray Client drivers for the end-to-end tests: each `ray.init("ray://…")` in a subprocess of the
venv's python (Ray Client is process-global state), with a bounded wait, stopped by its pid."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

DRIVER_TIMEOUT_S = 60.0
# Ray 2.60's proxier now and then fails to start the per-client server on this busy 2-core machine
# (seen as often when ray.init connects to Ray directly, without the proxy): such a driver gets one
# more try.
RAY_START_FLAKE = "Starting Ray client server failed"


def driver_env() -> dict[str, str]:
    scrub = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
    env = {k: v for k, v in os.environ.items() if k not in scrub}
    env["PYTHONUNBUFFERED"] = "1"
    # No test reconnects, and Ray's proxier holds even a failed session start for the client's grace
    # period (default 30 s) before it answers: keep a RAY_START_FLAKE retry short.
    env["RAY_CLIENT_RECONNECT_GRACE_PERIOD"] = "5"
    return env


def start_driver(tmp: Path, body: str, *args: str) -> subprocess.Popen[str]:
    script = tmp / f"driver_{time.monotonic_ns()}.py"
    script.write_text(textwrap.dedent(body))
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=driver_env(),
        cwd=tmp,
    )


def finish(proc: subprocess.Popen[str], stdin: str = "") -> str:
    """What the driver printed; the test fails if it does not end within DRIVER_TIMEOUT_S."""
    try:
        out, _ = proc.communicate(stdin or None, timeout=DRIVER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
        pytest.fail(f"driver did not end within {DRIVER_TIMEOUT_S:.0f} s:\n{out[-3000:]}")
    return out


def run_to_end(tmp: Path, body: str, *args: str) -> str:
    for _ in range(2):
        out = finish(start_driver(tmp, body, *args))
        if RAY_START_FLAKE not in out:
            break
    return out


def wait_for_line(proc: subprocess.Popen[str], prefix: str) -> tuple[str | None, str]:
    """(the first stdout line starting with `prefix`, or None if the driver ended first; its output)."""
    seen: list[str] = []
    found: list[str | None] = []

    def reader() -> None:
        for _ in range(10_000):
            line = proc.stdout.readline() if proc.stdout else ""
            seen.append(line)
            if not line or line.startswith(prefix):
                found.append(line.strip() or None)
                return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t.join(DRIVER_TIMEOUT_S)
    if not found:
        proc.kill()
        pytest.fail(f"driver printed no {prefix!r} line within {DRIVER_TIMEOUT_S:.0f} s:\n{''.join(seen)}")
    return found[0], "".join(seen)


def shown(out: str) -> str:
    return out if len(out) < 8000 else out[:4000] + "\n[...]\n" + out[-4000:]
