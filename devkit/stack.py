"""The whole product on loopback, as processes: a real Ray head (token auth on), the proxy in front,
and `dev-iap` in front of that for a browser. Used by the end-to-end tests and by `make demo`.

Every process is started here and stopped here by its pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from devkit.http import http_get
from devkit.ports import free_ports
from devkit.rayhead import RayHead
from proxy import dev

AUDIENCE = dev.DEV_AUDIENCE
TENANT = "team-a"
POLICY = textwrap.dedent("""\
    # Demo policy: alice may run jobs, bob may only look, carol may look and read logs.
    roles:
      viewer: [view]
      reader: [view, logs]
      scientist: [view, logs, submit, stop, delete]
    bindings:
      - tenant: team-a
        role: scientist
        members: ["user:alice@example.com"]
      - tenant: team-a
        role: viewer
        members: ["user:bob@example.com"]
      - tenant: team-a
        role: reader
        members: ["user:carol@example.com"]
      - tenant: team-b
        role: scientist
        members: ["user:mallory@example.com"]
""")

# Client-side Ray settings that must not leak into the CLI we drive: it talks to the proxy only.
_CLIENT_SCRUB = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_JOB_HEADERS")


class StackError(RuntimeError):
    pass


class Stack:
    """Ray head + proxy + dev-iap on free loopback ports, under `workdir`."""

    def __init__(
        self,
        workdir: Path,
        *,
        browser_email: str = "alice@example.com",
        policy: str = POLICY,
        proxy_port: int | None = None,
        iap_port: int | None = None,
        head: RayHead | None = None,
        extra_config: str = "",
        ray_client: bool = False,
    ) -> None:
        """`extra_config` is YAML appended to the proxy's config; `ray_client` opens its gRPC listener
        (`client_listen`) in front of the head's Ray Client server."""
        self.workdir = workdir
        self.extra_config = extra_config
        self.client_port = free_ports(1)[0] if ray_client else None
        self.browser_email = browser_email
        self.policy = policy
        ports = free_ports(2)
        self.proxy_port = proxy_port or ports[0]
        self.iap_port = iap_port or ports[1]
        self.head = head or RayHead()
        self._own_head = head is None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._files: list[IO[bytes]] = []
        self.key_path = workdir / "dev-key.pem"

    # -- addresses -------------------------------------------------------------------------------
    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def client_address(self) -> str:
        """`ray://` through the proxy's gRPC listener (with `ray_client=True`)."""
        return f"ray://127.0.0.1:{self.client_port}"

    @property
    def browser_url(self) -> str:
        return f"http://127.0.0.1:{self.iap_port}"

    @property
    def jwks_url(self) -> str:
        return f"{self.browser_url}{dev.JWKS_PATH}"

    @property
    def access_log(self) -> Path:
        return self.workdir / "access.log"

    # -- lifecycle --------------------------------------------------------------------------------
    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            if self._own_head:
                self.head.start()
            self.key = (
                dev.load_key(self.key_path) if self.key_path.exists() else dev.generate_key(self.key_path)
            )
            self._write_config()
            self._spawn(
                "dev-iap",
                [
                    "dev-iap",
                    "--key",
                    str(self.key_path),
                    "--as",
                    self.browser_email,
                    "--listen",
                    f"127.0.0.1:{self.iap_port}",
                    "--upstream",
                    self.proxy_url,
                    "--audience",
                    AUDIENCE,
                ],
            )
            self._wait(self.jwks_url, 200, "dev-iap")
            self._spawn(
                "proxy", ["serve", "--config", str(self.workdir / "proxy.yaml")], stdout=self.access_log
            )
            self._wait(f"{self.proxy_url}/readyz", 200, "proxy")
        except BaseException:
            self.stop()
            raise

    def _write_config(self) -> None:
        (self.workdir / "ray_token").write_text(self.head.token)
        os.chmod(self.workdir / "ray_token", 0o600)
        (self.workdir / "policy.yaml").write_text(self.policy)
        (self.workdir / "proxy.yaml").write_text(
            textwrap.dedent(f"""\
            listen: 127.0.0.1:{self.proxy_port}
            upstream: {self.head.dashboard_url}
            public_url: {self.browser_url}
            tenant: {TENANT}
            iap:
              audiences: ["{AUDIENCE}"]
              jwks_url: {self.jwks_url}
            ray_token_file: ray_token
            policy_file: policy.yaml
            shutdown_grace_seconds: 5
            """)
            + (
                f"client_listen: 127.0.0.1:{self.client_port}\n"
                f"client_upstream: 127.0.0.1:{self.head.ports.client_server}\n"
                if self.client_port is not None
                else ""
            )
            + self.extra_config
        )

    def _spawn(self, name: str, args: Sequence[str], stdout: Path | None = None) -> None:
        out = open(stdout or self.workdir / f"{name}.out", "ab")  # noqa: SIM115 - closed in stop()
        err = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115
        self._files += [out, err]
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "proxy", *args],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _wait(self, url: str, status: int, name: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise StackError(
                    f"{name} exited with {self.procs[name].returncode}: {self.log(name)[-2000:]}"
                )
            try:
                if http_get(url, timeout=2)[0] == status:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise StackError(f"{name} not ready at {url} within {timeout:.0f} s: {self.log(name)[-2000:]}")

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=5)
        for f in self._files:
            f.close()
        self._files.clear()
        if self._own_head:
            self.head.stop()

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def access_records(self) -> list[dict[str, Any]]:
        if not self.access_log.exists():
            return []
        return [json.loads(line) for line in self.access_log.read_text().splitlines() if line.startswith("{")]

    # -- clients ----------------------------------------------------------------------------------
    def token(self, email: str, **kw: Any) -> str:
        return dev.mint(self.key, email, AUDIENCE, **kw)

    def ray(
        self, *args: str, email: str | None = None, cwd: Path | None = None, timeout: float = 180.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the real `ray` CLI against the proxy, as `email` (None: with no IAP assertion)."""
        env = {k: v for k, v in os.environ.items() if k not in _CLIENT_SCRUB}
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        headers = ["--headers", json.dumps({"x-goog-iap-jwt-assertion": self.token(email)})] if email else []
        sub, rest = args[0], list(args[1:])
        cmd = [
            str(Path(sys.executable).parent / "ray"),
            "job",
            sub,
            "--address",
            self.proxy_url,
            *headers,
            *rest,
        ]
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd, stdin=subprocess.DEVNULL
        )
