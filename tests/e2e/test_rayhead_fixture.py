"""Real-Ray tests of the RayHead helper (slow: each head takes ~6 s to start)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from devkit.http import http_get
from devkit.rayhead import RayHead

pytestmark = pytest.mark.e2e  # ray[default] is a test dependency: its absence must fail, not skip


def _ps_lines_mentioning(text: str) -> list[str]:
    """`ps` lines (other than ps itself) whose command line contains ``text``."""
    out = subprocess.run(
        ["ps", "-ww", "-eo", "pid,pgid,args"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    return [ln for ln in out.splitlines()[1:] if text in ln and " ps -ww -eo " not in ln]


def _live_group_members(pgid: int) -> list[str]:
    out = subprocess.run(
        ["ps", "-ww", "-eo", "pid=,pgid=,stat=,args="], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    rows = [ln.split(None, 3) for ln in out.splitlines() if ln.strip()]
    return [" ".join(r) for r in rows if int(r[1]) == pgid and not r[2].startswith("Z")]


def _assert_gone(head: RayHead, temp_dir: str, pgid: int) -> None:
    assert head.leftover_pids() == []
    assert _ps_lines_mentioning(temp_dir + "/") == []
    assert _ps_lines_mentioning(temp_dir + " ") == []
    # Zombies may linger in the group when PID 1 does not reap orphans (as in
    # some sandboxes); they are not running processes.
    assert _live_group_members(pgid) == []
    assert not os.path.exists(temp_dir)


def test_head_requires_token_and_stops_cleanly() -> None:
    head = RayHead(startup_timeout=120)
    head.start()
    try:
        assert head.running
        assert head.dashboard_url.startswith("http://127.0.0.1:")
        assert len(head.token) == 64
        assert os.path.isdir(head.temp_dir) and len(head.temp_dir) < 30
        assert head.startup_seconds is not None and head.startup_seconds < 120
        url = head.dashboard_url + "/api/version"

        status, body = http_get(url)
        assert status == 401, body
        status, body = http_get(url, {"X-Ray-Authorization": "Bearer " + "0" * 64})
        assert status == 403, body
        status, body = http_get(url, head.auth_headers)
        assert status == 200, body
        version = json.loads(body)
        assert version["ray_version"] == "2.60.0"
        assert version["session_name"] == Path(head.temp_dir, "session_latest").resolve().name

        status, body = http_get(head.dashboard_url + "/api/authentication_mode")
        assert (status, json.loads(body)) == (200, {"authentication_mode": "token"})

        tree = head.tree_pids()
        assert head.pid in tree and len(tree) >= 5
        assert head.rss_bytes() > 100 * 1024 * 1024
        assert _ps_lines_mentioning(head.temp_dir + "/")
    finally:
        temp_dir, pgid = head.temp_dir, head.pid
        head.stop()
    _assert_gone(head, temp_dir, pgid)


def test_two_heads_run_side_by_side() -> None:
    with RayHead() as a:
        with RayHead() as b:
            assert a.ports.dashboard != b.ports.dashboard
            assert set(a.tree_pids()).isdisjoint(b.tree_pids())
            assert http_get(a.dashboard_url + "/api/version", a.auth_headers)[0] == 200
            assert http_get(b.dashboard_url + "/api/version", b.auth_headers)[0] == 200
            # Tokens are per head.
            assert http_get(b.dashboard_url + "/api/version", a.auth_headers)[0] == 403
            b_dir, b_pgid = b.temp_dir, b.pid
        _assert_gone(b, b_dir, b_pgid)
        # Stopping b must not touch a.
        assert a.running
        assert http_get(a.dashboard_url + "/api/version", a.auth_headers)[0] == 200
        a_dir, a_pgid = a.temp_dir, a.pid
    _assert_gone(a, a_dir, a_pgid)
