"""The developer's commands as people run them by hand: keys are never created or replaced behind
their back, limits are said where they bite, and `dev-config` gives a setup that works as printed."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import jwt

from devkit.ports import free_ports
from proxy import dev

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        capture_output=True, text=True, timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_dev_keygen_never_overwrites_a_key(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    assert run("dev-keygen", "--out", str(key)).returncode == 0
    before = key.read_bytes()
    r = run("dev-keygen", "--out", str(key))
    assert (
        r.returncode == 2 and f"--out: {str(key)!r} exists; keep it, or replace it with --force" in r.stderr
    )
    assert key.read_bytes() == before
    assert run("dev-keygen", "--out", str(key), "--force").returncode == 0
    assert key.read_bytes() != before and oct(key.stat().st_mode & 0o777) == "0o600"


def test_dev_keygen_into_a_missing_directory(tmp_path: Path) -> None:
    r = run("dev-keygen", "--out", str(tmp_path / "nope" / "k.pem"))
    assert r.returncode == 2 and f"directory {str(tmp_path / 'nope')!r} does not exist" in r.stderr
    assert "Traceback" not in r.stderr


def test_a_missing_key_is_refused_and_never_created(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    for cmd in (["dev-token"], ["dev-iap", "--upstream", "http://127.0.0.1:1", "--listen", "127.0.0.1:1"]):
        r = run(*cmd, "--key", str(key), "--as", "a@example.com")
        assert r.returncode == 2, r.stderr
        assert (
            f"--key: {str(key)!r} does not exist; make one with `ray-iap-proxy dev-keygen --out {key}`"
            in r.stderr
        )
        assert not key.exists() and "Traceback" not in r.stderr


def test_a_malformed_key_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
    r = run("dev-token", "--key", str(bad), "--as", "a@example.com")
    assert r.returncode == 2 and f"--key: {str(bad)!r} is not a PEM private key" in r.stderr
    r = run("dev-token", "--key", str(tmp_path), "--as", "a@example.com")  # a directory
    assert r.returncode == 2 and "cannot be read (Is a directory)" in r.stderr and "Traceback" not in r.stderr


def test_dev_token_says_the_lifetime_limit(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    dev.generate_key(key)
    r = run("dev-token", "--key", str(key), "--as", "a@example.com", "--lifetime", "3600")
    assert r.returncode == 0
    claims = jwt.decode(r.stdout.strip(), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600
    assert "--lifetime 3600 is over the 600 s the proxy accepts by default" in r.stderr
    assert "iap.max_token_lifetime_seconds" in r.stderr
    assert run("dev-token", "--key", str(key), "--as", "a@example.com").stderr == ""
    r = run("dev-token", "--key", str(key), "--as", "a@example.com", "--lifetime", "0")
    assert r.returncode == 2 and "--lifetime: 0 must be at least 1 second" in r.stderr
    assert "iap.max_token_lifetime_seconds (600 by default)" in " ".join(
        run("dev-token", "--help").stdout.split()
    )


def test_dev_iap_on_a_port_in_use_is_exit_4(tmp_path: Path) -> None:
    import socket

    key = tmp_path / "k.pem"
    dev.generate_key(key)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        listen = f"127.0.0.1:{taken.getsockname()[1]}"
        r = run(
            "dev-iap",
            "--key",
            str(key),
            "--as",
            "a@example.com",
            "--listen",
            listen,
            "--upstream",
            "http://127.0.0.1:1",
        )
    assert (
        r.returncode == 4
        and f"--listen: cannot listen on {listen}" in r.stderr
        and "Traceback" not in r.stderr
    )
    r = run(
        "dev-iap",
        "--key",
        str(key),
        "--as",
        "a@example.com",
        "--listen",
        "127.0.0.1",
        "--upstream",
        "http://x:1",
    )
    assert r.returncode == 2 and "--listen: '127.0.0.1' must be HOST:PORT" in r.stderr


def test_dev_config_prints_the_quickstarts_commands_and_keeps_keys(tmp_path: Path) -> None:
    r = run("dev-config", "--out", ".dev", "--as", "you@example.com", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = (ROOT / "docs" / "quickstart.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", doc, re.S)
    printed = r.stdout.replace(str(Path(sys.executable).parent) + "/", ".venv/bin/")
    (commands,) = [b for b in blocks if "ray-iap-proxy serve --config .dev/proxy.yaml" in b]
    assert commands in printed, printed
    key, token = (
        (tmp_path / ".dev" / "dev-key.pem").read_bytes(),
        (tmp_path / ".dev" / "ray_token").read_text(),
    )
    check = run("check-config", "--config", str(tmp_path / ".dev" / "proxy.yaml"))
    assert check.returncode == 0 and "is the dev audience of dev-iap and dev-token" in check.stderr
    r = run("dev-config", "--out", ".dev", cwd=tmp_path)
    assert r.returncode == 2 and "proxy.yaml' exists; replace it with --force" in r.stderr
    assert (
        run("dev-config", "--out", ".dev", "--as", "b@example.com", "--force", cwd=tmp_path).returncode == 0
    )
    assert (tmp_path / ".dev" / "dev-key.pem").read_bytes() == key  # --force never touches the key
    assert (tmp_path / ".dev" / "ray_token").read_text() == token
    assert "user:b@example.com" in (tmp_path / ".dev" / "policy.yaml").read_text()


async def test_dev_config_runs_as_printed(tmp_path: Path, stub_ray: tuple[Any, str]) -> None:
    """dev-config, then dev-iap and serve as separate processes with its files: a request through
    dev-iap reaches Ray (the stub) as the configured identity, with the generated Ray token."""
    double, upstream = stub_ray
    proxy_port, iap_port = free_ports(2)
    listen, iap_listen = f"127.0.0.1:{proxy_port}", f"127.0.0.1:{iap_port}"
    out = tmp_path / "dev"
    r = run("dev-config", "--out", str(out), "--as", "you@example.com", "--listen", listen,
            "--iap-listen", iap_listen, "--upstream", upstream)  # fmt: skip
    assert r.returncode == 0, r.stderr
    procs = [
        subprocess.Popen(  # noqa: ASYNC220 - started here, stopped by pid below
            [sys.executable, "-m", "proxy", *args],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / f"{name}.log", "wb"),  # noqa: SIM115, ASYNC230
        )  # fmt: skip
        for name, args in (
            (
                "dev-iap",
                [
                    "dev-iap",
                    "--key",
                    str(out / "dev-key.pem"),
                    "--as",
                    "you@example.com",
                    "--listen",
                    iap_listen,
                    "--upstream",
                    f"http://{listen}",
                ],
            ),
            ("serve", ["serve", "--config", str(out / "proxy.yaml")]),
        )  # fmt: skip
    ]
    try:
        async with aiohttp.ClientSession() as http:
            status = 0
            for _ in range(300):  # up to 30 s: the proxy fetches dev-iap's key set, then is ready
                try:
                    async with http.get(f"http://{listen}/readyz") as resp:
                        status = resp.status
                except aiohttp.ClientError:
                    pass
                if status == 200 or any(p.poll() is not None for p in procs):
                    break
                await asyncio.sleep(0.1)
            assert status == 200, [(tmp_path / f"{n}.log").read_text() for n in ("dev-iap", "serve")]
            async with http.get(f"http://{iap_listen}/api/jobs/") as resp:
                assert resp.status == 200
            async with http.post(f"http://{iap_listen}/api/jobs/", json={}) as resp:
                assert resp.status == 200  # you@example.com is a scientist: submit is granted
            async with http.get(f"http://{listen}/api/jobs/") as resp:
                assert resp.status == 401  # past dev-iap, no assertion
        token = (out / "ray_token").read_text().strip()
        assert double.last_headers()["x-ray-authorization"] == f"Bearer {token}"
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            assert p.wait(timeout=20) == 0
