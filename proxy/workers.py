"""The serving process as a process: the collector tuned once start-up is done, and `--workers N`.

Garbage collection was 12 % of the CPU per request with Python's defaults: a young-generation pass
every 700 allocations walks every object a request has made so far, and a full pass walks the whole
start-up heap (modules, the route table, the settings, the key set) every time. After start-up that
heap is frozen (`gc.freeze`: never walked again, never freed), and the young generation is collected
every `GEN0_THRESHOLD` allocations instead; reference counting still frees almost everything at once,
so this only delays the rare cycle.

With `workers` above 1, `serve` becomes a supervisor of that many worker processes, each a whole
proxy (`python -m proxy serve` again, told which worker it is by `WORKER_ENV`) with its own key set,
token and policy caches, all listening on the same port (SO_REUSEPORT: the kernel spreads the
connections). The supervisor
- relays the workers' stdout and stderr line by line (no two workers' lines can interleave mid-line
  in a pipe, however long);
- on SIGTERM or SIGINT passes SIGTERM to every worker, which drains as one proxy would
  (`shutdown_grace_seconds`), and kills what is left `KILL_MARGIN_SECONDS` later;
- restarts a worker that exits on its own, at most `MAX_RESTARTS` times in `WINDOW_SECONDS`;
  past that it stops them all and exits 1, so the pod restarts (each restart is logged);
- serves `metrics_listen` itself: every worker's metrics, each sample labelled `worker`
  (`worker_metrics.py`).
The Ray Client listener (`client_listen`) runs in worker 0 only: a Ray Client session's credential
and owner are remembered in the process that admitted it, and a reconnect could land elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .cli.errors import EXIT_CONFIG, EXIT_UNAVAILABLE, EXIT_USAGE

log = logging.getLogger("ray_iap_proxy")

GEN0_THRESHOLD = 50_000
WORKER_ENV = "RAY_IAP_PROXY_WORKER"  # "INDEX/COUNT[/METRICS_SOCKET]", set by the supervisor only
MAX_RESTARTS, WINDOW_SECONDS, RESTART_DELAY_SECONDS = 5, 60.0, 1.0
KILL_MARGIN_SECONDS = 10.0
MAX_LINE_BYTES = 1 << 20  # a worker's output line relayed whole up to this size
PR_SET_PDEATHSIG = 1
FINAL_EXITS = frozenset({EXIT_USAGE, EXIT_CONFIG, EXIT_UNAVAILABLE})  # bad config, cannot listen


def tune_gc() -> None:
    """Call once, when start-up is done and the listeners are up."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)


@dataclass(frozen=True)
class Worker:
    """Which worker this process is; None of it outside a supervisor."""

    index: int
    count: int
    metrics_socket: str | None = None  # where to serve /metrics for the supervisor to collect

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Worker | None:
        value = environ.get(WORKER_ENV)
        if not value:
            return None
        index, count, *rest = value.split("/", 2)
        return cls(int(index), int(count), rest[0] if rest else None)

    def __str__(self) -> str:
        return f"worker {self.index} of {self.count}"


def die_with_supervisor() -> None:
    """In a worker (Linux): SIGTERM when the supervisor dies, even by SIGKILL, so no worker outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # it died before we asked
        os.kill(os.getpid(), signal.SIGTERM)


def supervise(argv: Sequence[str], count: int, grace: float, metrics: tuple[str, int] | None) -> int:
    """Run `count` workers (`argv` starts one) until SIGTERM; the exit status for `serve`."""
    return asyncio.run(Supervisor(list(argv), count, grace, metrics).run())


class Supervisor:
    def __init__(self, argv: list[str], count: int, grace: float, metrics: tuple[str, int] | None) -> None:
        self.argv, self.count, self.grace, self.metrics = argv, count, grace, metrics
        self.stopping = asyncio.Event()
        self.restarts: list[float] = []
        self.failed = False
        self.dir = tempfile.mkdtemp(prefix="ray-iap-proxy-workers-")
        self.relays: set[asyncio.Task[None]] = set()  # held until each worker's output ends

    def socket(self, index: int) -> str | None:
        return str(Path(self.dir) / f"metrics-{index}.sock") if self.metrics else None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        runner = None
        if self.metrics is not None:
            from .worker_metrics import serve_merged

            runner = await serve_merged(self.metrics, [self.socket(i) or "" for i in range(self.count)])
        log.info("supervising %d workers", self.count)
        try:
            async with asyncio.TaskGroup() as tasks:
                for index in range(self.count):
                    tasks.create_task(self.keep(index))
        finally:
            if self.relays:
                await asyncio.wait(self.relays, timeout=5)  # the last lines of every worker
            if runner is not None:
                await runner.cleanup()
            shutil.rmtree(self.dir, ignore_errors=True)  # the metrics sockets
        log.info("all workers stopped")
        return 1 if self.failed else 0

    async def keep(self, index: int) -> None:
        """Worker `index`, restarted when it exits on its own, until the supervisor stops."""
        while not self.stopping.is_set():
            proc = await self.start(index)
            stopped = asyncio.ensure_future(self.stopping.wait())
            exited = asyncio.ensure_future(proc.wait())
            await asyncio.wait({stopped, exited}, return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                await self.stop(proc, exited)
                return
            stopped.cancel()
            log.error("worker %d (pid %d) exited with %s", index, proc.pid, proc.returncode)
            if proc.returncode in FINAL_EXITS:  # its config or its port: another try ends the same way
                self.failed = True
                self.stopping.set()
                return
            now = time.monotonic()
            self.restarts = [t for t in self.restarts if now - t < WINDOW_SECONDS] + [now]
            if len(self.restarts) > MAX_RESTARTS:
                log.error("more than %d worker restarts in %g s: stopping", MAX_RESTARTS, WINDOW_SECONDS)
                self.failed = True
                self.stopping.set()
                return
            await asyncio.sleep(RESTART_DELAY_SECONDS)
            log.warning("restarting worker %d", index)

    async def start(self, index: int) -> asyncio.subprocess.Process:
        value = f"{index}/{self.count}" + (f"/{self.socket(index)}" if self.metrics else "")
        proc = await asyncio.create_subprocess_exec(
            *self.argv,
            env={**os.environ, WORKER_ENV: value},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        for stream, out in ((proc.stdout, sys.stdout), (proc.stderr, sys.stderr)):
            relay = asyncio.get_running_loop().create_task(relay_lines(stream, out))
            self.relays.add(relay)
            relay.add_done_callback(self.relays.discard)
        log.info("worker %d started (pid %d)", index, proc.pid)
        return proc

    async def stop(self, proc: asyncio.subprocess.Process, exited: asyncio.Future[int]) -> None:
        """SIGTERM: the worker drains; SIGKILL if it is still there `KILL_MARGIN_SECONDS` after its
        grace period."""
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            await asyncio.wait_for(asyncio.shield(exited), self.grace + KILL_MARGIN_SECONDS)
        except TimeoutError:
            log.error("worker pid %d still running after the grace period: SIGKILL", proc.pid)
            proc.kill()
            await exited


async def relay_lines(stream: asyncio.StreamReader, out: TextIO) -> None:
    """Copy a worker's output to ours in whole lines: each write ends at a newline. A line longer
    than `MAX_LINE_BYTES` is written in pieces of about that size (each ended with a newline), so a worker
    that never ends its line cannot grow the supervisor's memory."""
    buffer = out.buffer
    pending = b""
    while True:
        data = await stream.read(1 << 16)
        if not data:
            break
        pending += data
        cut = pending.rfind(b"\n") + 1
        if not cut and len(pending) >= MAX_LINE_BYTES:
            pending, cut = pending + b"\n", len(pending) + 1
        if cut:
            buffer.write(pending[:cut])
            buffer.flush()
            pending = pending[cut:]
    if pending:
        buffer.write(pending + b"\n")
        buffer.flush()
