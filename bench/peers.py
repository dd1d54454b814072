"""The authenticating targets: the proxy's config for a run, and the Apache + mod_oauth2 peer (started
and stopped by its own start.sh/stop.sh, its processes found and, if need be, killed by pid)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

from bench.procs import autogroup_nice, children_of
from bench.settings import AUDIENCE, EMAIL, NICE, RAY_TOKEN, ROOT, SUT_CORE, TENANT, log
from bench.wrk import Target


def apache_dir() -> Path | None:
    for cand in (os.environ.get("BENCH_APACHE_PEER"), ROOT / "bench" / "peers" / "apache"):
        if cand and (Path(cand) / "start.sh").exists():
            return Path(cand)
    return None


@contextlib.contextmanager
def apache_peer(run_dir: Path, listen_port: int, upstream: str, jwks_url: str) -> Iterator[Target | None]:
    peer = apache_dir()
    if peer is None or shutil.which("apache2") is None:
        log(
            "Apache peer skipped: needs bench/peers/apache and apache2 + libapache2-mod-oauth2 "
            "(apt-get install -y --no-install-recommends apache2 libapache2-mod-oauth2)"
        )
        yield None
        return
    adir = run_dir / "apache"
    argv = ["taskset", "-c", str(SUT_CORE), str(peer / "start.sh"), str(adir), f"127.0.0.1:{listen_port}"]
    argv += [upstream, jwks_url, AUDIENCE]
    master: int | None = None
    pids: list[int] = []
    try:
        subprocess.run(argv, check=True, timeout=30, capture_output=True)
        master = int((adir / "httpd.pid").read_text().strip())
        if NICE:
            autogroup_nice(master, NICE)  # it left our session when it daemonized

        def sut_pids() -> list[int]:
            assert master is not None
            kids = children_of(master)
            pids.extend(k for k in kids if k not in pids)
            return [master, *kids]

        url = f"http://127.0.0.1:{listen_port}"
        sut_pids()
        yield Target("apache", url, sut_pids)
    finally:
        if (adir / "httpd.conf").exists():
            subprocess.run([str(peer / "stop.sh"), str(adir)], timeout=30, capture_output=True, check=False)
        if master is not None:
            everyone = [master, *pids]
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in everyone):
                time.sleep(0.1)
            left = [p for p in everyone if Path(f"/proc/{p}").exists()]
            if left:
                log(f"Apache processes {left} still alive after stop.sh: SIGKILL by pid")
                for p in left:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p, signal.SIGKILL)


def write_proxy_config(
    run_dir: Path, port: int, upstream: str, jwks_url: str, *, name: str = "proxy", ray_token: str = RAY_TOKEN
) -> Path:
    """The proxy's config (`name`.yaml in `run_dir`): the default limits except a body limit that
    lets the 1 GiB upload through; the policy grants the bench identity what every point asks."""
    (run_dir / "policy.yaml").write_text(
        textwrap.dedent(f"""\
        roles:
          bench: [view, submit, logs]
        bindings:
          - tenant: {TENANT}
            role: bench
            members: ["user:{EMAIL}"]
        """)
    )
    (run_dir / f"{name}.ray_token").write_text(ray_token + "\n")
    cfg = run_dir / f"{name}.yaml"
    cfg.write_text(
        textwrap.dedent(f"""\
        listen: 127.0.0.1:{port}
        upstream: {upstream}
        tenant: {TENANT}
        iap:
          audiences: ["{AUDIENCE}"]
          jwks_url: {jwks_url}
        policy_file: policy.yaml
        ray_token_file: {name}.ray_token
        limits:
          max_body_bytes: {2 << 30}
        """)
    )
    return cfg
