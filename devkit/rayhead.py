"""Run a real Ray head with token auth on loopback, for end-to-end tests.

``RayHead`` starts ``ray start --head --block`` as a child process in its own
session (so its pid is also its process-group id), waits until the dashboard
answers ``GET /api/version`` with the token, and stops it by pid: SIGTERM to the
``ray start`` process, then SIGKILL to the whole process group and to any
straggler whose command line names this run's temp dir. It never runs
``ray stop``, so other runs on the same host are left alone.

Every port Ray would otherwise take from a fixed default is chosen free, so two
heads can run at once. Typical use::

    with RayHead() as head:
        requests.get(head.dashboard_url + "/api/version",
                     headers={"X-Ray-Authorization": f"Bearer {head.token}"})
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO

from devkit.http import http_get
from devkit.ports import free_ports

# Environment variables read by Ray's C++ AuthenticationTokenLoader / RayConfig
# (strings in ray/_raylet.so; RAY_AUTH_MODE also in
# ray/_private/authentication/authentication_token_setup.py).
AUTH_MODE_ENV = "RAY_AUTH_MODE"
AUTH_TOKEN_ENV = "RAY_AUTH_TOKEN"
# Header the dashboard accepts as a fallback to Authorization ("for proxies").
RAY_AUTH_HEADER = "X-Ray-Authorization"

# Variables that would make the child pick up another cluster or token.
_SCRUBBED_ENV = (
    "RAY_ADDRESS",
    "RAY_API_SERVER_ADDRESS",
    "RAY_AUTH_TOKEN_PATH",
    "RAY_JOB_HEADERS",
    "RAY_ENABLE_K8S_TOKEN_AUTH",
)


class RayHeadError(RuntimeError):
    """The head did not start, did not become ready, or did not stop cleanly."""


@dataclasses.dataclass(frozen=True)
class RayHeadPorts:
    """Ports chosen for one head. All are bound on loopback or the node IP."""

    gcs: int
    dashboard: int
    client_server: int
    dashboard_agent_http: int
    dashboard_agent_grpc: int
    runtime_env_agent: int
    metrics_export: int

    @classmethod
    def pick(cls) -> RayHeadPorts:
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**dict(zip(names, free_ports(len(names)), strict=True)))


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def _alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # State is the field after the parenthesised comm, which may contain spaces.
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X")


class RayHead:
    """A single-node Ray head with token auth and the dashboard on 127.0.0.1."""

    def __init__(
        self,
        *,
        num_cpus: int = 2,
        startup_timeout: float = 120.0,
        stop_timeout: float = 30.0,
        object_store_memory: int = 128 * 1024 * 1024,
        tmp_root: str = "/tmp",
        ray_executable: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        keep_temp_dir: bool = False,
        drain_timeout_s: float = 0.0,
        die_with_parent: bool = True,
    ) -> None:
        self._num_cpus = num_cpus
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._object_store_memory = object_store_memory
        self._tmp_root = tmp_root
        self._ray = ray_executable or _default_ray_executable()
        self._extra_env = dict(extra_env or {})
        self._keep_temp_dir = keep_temp_dir
        # Ray 2.60 `ray start --block` drains the node for up to
        # RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S (default 30 s) on SIGTERM; 0 = off.
        self._drain_timeout_s = drain_timeout_s
        # Linux PR_SET_PDEATHSIG: SIGTERM `ray start` if the thread that started
        # it dies (e.g. pytest is killed). Start from a long-lived thread.
        self._die_with_parent = die_with_parent
        self._token = secrets.token_hex(32)
        self._ports: RayHeadPorts | None = None
        self._temp_dir: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.startup_seconds: float | None = None
        self.stop_seconds: float | None = None
        # True if stop() had to SIGKILL (SIGTERM alone did not clean up).
        self.stop_escalated = False

    # ----------------------------------------------------------------- props
    @property
    def token(self) -> str:
        return self._token

    @property
    def auth_headers(self) -> dict[str, str]:
        """Headers that authenticate to the head (what a proxy would inject)."""
        return {RAY_AUTH_HEADER: f"Bearer {self._token}"}

    @property
    def ports(self) -> RayHeadPorts:
        if self._ports is None:
            raise RayHeadError("RayHead not started")
        return self._ports

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.dashboard}"

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.ports.gcs}"

    @property
    def temp_dir(self) -> str:
        if self._temp_dir is None:
            raise RayHeadError("RayHead not started")
        return self._temp_dir

    @property
    def log_path(self) -> str:
        """stdout+stderr of ``ray start`` (outside temp_dir, removed by stop())."""
        return self.temp_dir + ".log"

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RayHeadError("RayHead not started")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -------------------------------------------------------------- lifecycle
    def __enter__(self) -> RayHead:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self._proc is not None:
            raise RayHeadError("RayHead already started")
        # Short path: Ray puts unix sockets under <temp>/session_*/sockets/.
        self._temp_dir = tempfile.mkdtemp(prefix="ray", dir=self._tmp_root)
        self._ports = RayHeadPorts.pick()
        p = self._ports
        cmd = [
            self._ray, "start", "--head", "--block",
            "--temp-dir", self._temp_dir,
            "--port", str(p.gcs),
            "--dashboard-host", "127.0.0.1",
            "--dashboard-port", str(p.dashboard),
            "--ray-client-server-port", str(p.client_server),
            "--dashboard-agent-listen-port", str(p.dashboard_agent_http),
            "--dashboard-agent-grpc-port", str(p.dashboard_agent_grpc),
            "--runtime-env-agent-port", str(p.runtime_env_agent),
            "--metrics-export-port", str(p.metrics_export),
            # 0 = kernel-chosen ports instead of the fixed default 10002-19999.
            "--node-manager-port", "0",
            "--object-manager-port", "0",
            "--min-worker-port", "0",
            "--max-worker-port", "0",
            "--num-cpus", str(self._num_cpus),
            "--object-store-memory", str(self._object_store_memory),
            "--include-dashboard", "true",
            "--disable-usage-stats",
            "--log-style", "record",
            "--log-color", "false",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        # Job entrypoints say `python …`: make that the interpreter Ray itself runs in.
        env["PATH"] = os.pathsep.join([str(Path(self._ray).parent), env.get("PATH", "")])
        env.update(
            {
                AUTH_MODE_ENV: "token",
                AUTH_TOKEN_ENV: self._token,
                "RAY_USAGE_STATS_ENABLED": "0",
                "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": str(self._drain_timeout_s),
            }
        )
        env.update(self._extra_env)
        self._log = open(self.log_path, "wb")
        t0 = time.monotonic()
        self._proc = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self._temp_dir,
            preexec_fn=_pdeathsig_preexec() if self._die_with_parent else None,
        )
        try:
            self._wait_ready(t0)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0

    def _wait_ready(self, t0: float) -> None:
        deadline = t0 + self._startup_timeout
        url = self.dashboard_url + "/api/version"
        last = "no answer yet"
        max_polls = int(self._startup_timeout / 0.25) + 1
        for _ in range(max_polls):
            if self._proc is not None and self._proc.poll() is not None:
                raise RayHeadError(
                    f"ray start exited with {self._proc.returncode} before the "
                    f"dashboard was ready:\n{self.read_log()[-4000:]}"
                )
            try:
                status, body = http_get(url, self.auth_headers, timeout=2.0)
                if status == 200:
                    self._check_session(json.loads(body))
                    return
                last = f"HTTP {status}: {body[:200]!r}"
            except OSError as e:
                last = repr(e)
            if time.monotonic() >= deadline:
                break
            time.sleep(0.25)
        raise RayHeadError(
            f"dashboard {url} not ready after {self._startup_timeout:.0f}s "
            f"({last}):\n{self.read_log()[-4000:]}"
        )

    def _check_session(self, version: dict[str, object]) -> None:
        """Make sure the dashboard on our port belongs to this run.

        `ray start` passes --port-retries=0 to the dashboard, but another
        process could still grab the chosen port between pick() and bind.
        """
        latest = Path(self.temp_dir) / "session_latest"
        with contextlib.suppress(OSError):
            ours = latest.resolve().name
            if version.get("session_name") != ours:
                raise RayHeadError(
                    f"port {self.ports.dashboard} answers for session "
                    f"{version.get('session_name')!r}, expected {ours!r}"
                )

    def stop(self) -> None:
        """Stop this head by pid; SIGKILL its process group if SIGTERM is not enough."""
        proc = self._proc
        t0 = time.monotonic()
        try:
            if proc is not None:
                self._terminate(proc)
                self.stop_seconds = time.monotonic() - t0
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
            if not self._keep_temp_dir and self._temp_dir is not None:
                shutil.rmtree(self._temp_dir, ignore_errors=True)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._temp_dir + ".log")
        if proc is not None:
            left = self.leftover_pids()
            if left:
                raise RayHeadError(f"processes survived stop(): {left}")

    def _terminate(self, proc: subprocess.Popen[bytes]) -> None:
        pgid = proc.pid  # start_new_session=True: session and group leader
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=self._stop_timeout)
        # `ray start --block` kills its children on SIGTERM, but give the group
        # a moment to go, then SIGKILL whatever is still in it.
        deadline = time.monotonic() + min(10.0, self._stop_timeout)
        for _ in range(100):
            if not self._group_and_strays() or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        if not self._group_and_strays() and proc.poll() is not None:
            return
        self.stop_escalated = True
        for _ in range(3):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            for pid in self._group_and_strays():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            if proc.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
            if not self._group_and_strays():
                break
            time.sleep(0.2)

    # ------------------------------------------------------------ inspection
    def _group_and_strays(self) -> list[int]:
        """Live pids in our process group or naming our temp dir on their cmdline."""
        if self._proc is None or self._temp_dir is None:
            return []
        pgid = self._proc.pid
        base = self._temp_dir.encode()
        needles = (base + b"/", base + b"\0")
        me = os.getpid()
        found: list[int] = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            if pid == me:
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            mine = _pgid(pid) == pgid or any(n in cmdline for n in needles)
            if mine and _alive(pid):
                found.append(pid)
        return sorted(found)

    def tree_pids(self) -> list[int]:
        """All live processes of this head (the ray start process included)."""
        return self._group_and_strays()

    def leftover_pids(self) -> list[int]:
        """After stop(): processes from this run that are still alive (want [])."""
        return self._group_and_strays()

    def rss_bytes(self) -> int:
        """Sum of VmRSS over tree_pids(); shared pages are counted once per process."""
        return self._sum_proc_field("status", "VmRSS:")

    def pss_bytes(self) -> int:
        """Sum of Pss over tree_pids(): shared pages split between sharers."""
        return self._sum_proc_field("smaps_rollup", "Pss:")

    def _sum_proc_field(self, proc_file: str, key: str) -> int:
        total = 0
        for pid in self.tree_pids():
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{pid}/{proc_file}") as f:
                    for line in f:
                        if line.startswith(key):
                            total += int(line.split()[1]) * 1024  # kB
                            break
        return total

    def read_log(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """A preexec_fn that asks Linux to SIGTERM the child when its parent dies."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)

    return preexec


def _default_ray_executable() -> str:
    """The ``ray`` script next to the running interpreter (the venv), else PATH."""
    candidate = Path(sys.executable).parent / "ray"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("ray")
    if found is None:
        raise RayHeadError("cannot find the `ray` executable")
    return found
