"""The command line as users run it: subprocesses of `python -m proxy` (and of the console script),
with the exit codes of `proxy/cli/errors.py`: 0 ok, 1 explain refused, 2 the command line is wrong,
3 the config is wrong, 4 an address is in use, 130 interrupted, 141 stdout closed early."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import io
import json
import os
import pty
import re
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestServer

from devkit.config import POLICY, write_config
from proxy import dev
from proxy.auth.providers.iap import iap_rules
from proxy.auth.verify import verify
from proxy.cli import main
from proxy.settings import Iap

ROOT = Path(__file__).resolve().parents[2]


def run(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **env} if env else None,
    )


def test_check_config_ok_and_problems(tmp_path: Path) -> None:
    r = run("check-config", "--config", "config/proxy.yaml")
    assert r.returncode == 0 and "ok (tenant team-a" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("tenant: A\nupstream: ftp://x\niap: {audiences: []}\nwhat: 1\n")
    r = run("check-config", "--config", str(bad))
    assert r.returncode == 3
    assert "4 problem(s)" in r.stderr
    for line in (
        "tenant: 'A' must be a Kubernetes namespace name",
        "upstream: 'ftp://x'",
        "iap.audiences: [] must list at least one audience",
        "what: unknown key",
    ):
        assert line in r.stderr
    assert "Traceback" not in r.stderr


def test_check_config_missing_file_names_it(tmp_path: Path) -> None:
    r = run("check-config", "--config", str(tmp_path / "nope.yaml"))
    assert r.returncode == 3 and "nope.yaml" in r.stderr and "cannot be read" in r.stderr
    assert r.stderr.count("\n  - ") == 1, r.stderr  # alone: no "required" noise after it


@pytest.mark.parametrize(
    "email, method, path, decision, verb",
    [
        ("alice@example.com", "POST", "/api/jobs/", "allow", "submit"),
        ("bob@example.com", "POST", "/api/jobs/", "deny", "submit"),
        ("bob@example.com", "HEAD", "/api/jobs/raysubmit_1", "allow", "view"),
        ("alice@example.com", "GET", "/test/dump", "deny", None),
        ("alice@example.com", "GET", "/api/../test/dump", "malformed", None),
    ],
)
def test_explain(email: str, method: str, path: str, decision: str, verb: str | None) -> None:
    r = run("explain", "--config", "config/proxy.yaml", "--email", email, "--method", method, path)
    out = json.loads(r.stdout)
    assert out["decision"] == decision and out["verb"] == verb and out["tenant"] == "team-a"
    assert r.returncode == (0 if decision == "allow" else 1)


def test_explain_domain_needs_hd() -> None:
    args = ("explain", "--config", "config/proxy.yaml", "--email", "x@example.org", "/api/jobs/")
    assert json.loads(run(*args).stdout)["decision"] == "deny"
    assert json.loads(run(*args, "--hd", "example.org").stdout)["decision"] == "allow"


def test_routes_lists_the_whole_table() -> None:
    r = run("routes", "--json")
    table = json.loads(r.stdout)
    assert table["ray_version"] == "2.60.0" and len(table["routes"]) == 69
    text = run("routes").stdout
    assert "POST    /api/jobs/" in text and "submit" in text


def test_dev_token_is_verifiable_with_the_published_key_set(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    assert run("dev-keygen", "--out", str(key)).returncode == 0
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    tok = run(
        "dev-token", "--key", str(key), "--as", "Alice@Example.com", "--hd", "example.com"
    ).stdout.strip()
    priv = dev.load_key(key)
    ident = verify(
        tok,
        {dev.key_id(priv): priv.public_key()},
        iap_rules(Iap(audiences=(dev.DEV_AUDIENCE,))),
        jwt.decode(tok, options={"verify_signature": False})["iat"],
    )
    assert ident.email == "alice@example.com" and ident.hosted_domain == "example.com"


@pytest.mark.parametrize("listen", ["0.0.0.0:8080", "192.0.2.1:8080", "example.com:80", "[::]:8080"])
def test_dev_iap_refuses_non_loopback(tmp_path: Path, listen: str) -> None:
    r = run(
        "dev-iap",
        "--key",
        str(tmp_path / "k.pem"),
        "--as",
        "a@b.c",
        "--listen",
        listen,
        "--upstream",
        "http://127.0.0.1:1",
    )
    assert r.returncode == 2 and "loopback only" in r.stderr
    assert not (tmp_path / "k.pem").exists() and "Traceback" not in r.stderr


async def test_dev_iap_signs_for_the_proxy(tmp_path: Path, stub_ray: Any, aiohttp_client: Any) -> None:
    """dev-iap -> the real proxy app -> stub Ray: the proxy verifies dev-iap's key set over HTTP."""
    from proxy import settings as settings_mod
    from proxy.app import build_app

    key = dev.generate_key(tmp_path / "k.pem")
    iap_probe = dev.dev_iap_app(key, "alice@example.com", "http://127.0.0.1:1")
    jwks_server = TestServer(iap_probe, host="127.0.0.1")
    await jwks_server.start_server()
    cfg_path = write_config(tmp_path, str(jwks_server.make_url(dev.JWKS_PATH)), stub_ray[1])
    cfg_path.write_text(
        cfg_path.read_text().replace("/projects/111/global/backendServices/222", dev.DEV_AUDIENCE)
    )
    proxy_server = TestServer(build_app(settings_mod.load(cfg_path)), host="127.0.0.1")
    await proxy_server.start_server()
    iap = await aiohttp_client(dev.dev_iap_app(key, "alice@example.com", str(proxy_server.make_url(""))))
    r = await iap.get("/api/jobs/", headers={"x-goog-iap-jwt-assertion": "forged-by-client"})
    assert r.status == 200
    seen = stub_ray[0].last_headers()
    assert seen["x-ray-authorization"] == "Bearer ray-secret-token"
    ws = await iap.ws_connect("/api/jobs/raysubmit_1/logs/tail")
    assert await ws.receive_str() == "log line 1"
    await ws.close()
    await proxy_server.close()
    await jwks_server.close()


def test_schema_describes_the_files_the_proxy_accepts() -> None:
    """`schema` is the JSON Schema editors and CI validate with: the shipped files pass, a typo fails."""
    import jsonschema
    import yaml

    config = json.loads(run("schema").stdout)
    policy = json.loads(run("schema", "policy").stdout)
    assert {"listen", "iap", "limits"} <= set(config["properties"]) and config[
        "additionalProperties"
    ] is False
    assert {"roles", "groups", "bindings"} == set(policy["properties"])
    jsonschema.validate(yaml.safe_load(Path("config/policy.yaml").read_text()), policy)
    jsonschema.validate(yaml.safe_load(Path("config/proxy.yaml").read_text()), config)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"iap": {"audiences": ["a"]}, "polcy_file": "p.yaml"}, config)


# -- check-config points at the fix -----------------------------------------------------------------

GOOD = """\
listen: 127.0.0.1:8265
upstream: http://127.0.0.1:18265
tenant: team-a
iap:
  audiences: ["/projects/731246509812/global/backendServices/6817243950183374052"]
policy_file: policy.yaml
"""


def in_process(*args: str) -> subprocess.CompletedProcess[str]:
    """`main(args)` in this process, as the console script calls it: the same output and exit code as
    `run`, without a second of interpreter start-up per case (the subprocess tests below cover what only
    a real process shows: pipes, signals, ports)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def check(
    tmp_path: Path, config: str, *flags: str, policy: str | None = None
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "policy.yaml").write_text(policy if policy is not None else POLICY)
    (tmp_path / "proxy.yaml").write_text(config)
    return in_process("check-config", "--config", str(tmp_path / "proxy.yaml"), *flags)


def problems(r: subprocess.CompletedProcess[str]) -> list[str]:
    return [line[4:] for line in r.stderr.splitlines() if line.startswith("  - ")]


def test_a_good_config_is_ok_without_warnings(tmp_path: Path) -> None:
    r = check(tmp_path, GOOD)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert re.search(
        r": ok \(tenant team-a, \d+ role\(s\), \d+ binding\(s\) for this tenant, 1 audience", r.stdout
    )


@pytest.mark.parametrize(
    "change, expected",
    [
        (("iap:", "iap:\n  jwks: https://x"), "iap.jwks: unknown key: did you mean jwks_url?"),
        (("policy_file:", "polcy_file:"), "polcy_file: unknown key: did you mean policy_file?"),
        (("tenant:", "Tenant:"), "Tenant: unknown key: did you mean tenant?"),
        (("listen: 127.0.0.1:8265", "listen: 8265"), "listen: 8265 is a port alone: write HOST:PORT, e.g. "),
        (("listen: 127.0.0.1:8265", "listen: '8265'"), "listen: '8265' is a port alone"),
        (
            ("policy_file: policy.yaml\n", ""),
            "policy_file: required: without a policy (or kubernetes_rbac) every request is refused",
        ),
        (
            ("/projects/731246509812/global/backendServices/6817243950183374052", "6817243950183374052"),
            "iap.audiences[0]: '6817243950183374052' is not an IAP audience: the backend service's id alone",
        ),
        (
            ("/projects/731246509812/global/backendServices/6817243950183374052", "https://ray.example.com"),
            "is not an IAP audience: a URL is the audience of Google ID tokens (google_id_tokens)",
        ),
    ],
    ids=lambda v: v[1][:40] if isinstance(v, tuple) else v[:40],
)
def test_check_config_names_the_fix(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    r = check(tmp_path, GOOD.replace(*change))
    assert r.returncode == 3, r.stderr
    assert any(expected in p for p in problems(r)), r.stderr
    assert len(problems(r)) == 1 and "Traceback" not in r.stderr


def test_an_audience_error_says_how_to_find_the_value(tmp_path: Path) -> None:
    (msg,) = problems(check(tmp_path, GOOD.replace("/global/backendServices/", "/backendServices/")))
    for part in (
        "/projects/PROJECT_NUMBER/global/backendServices/SERVICE_ID",
        "/projects/PROJECT_NUMBER/apps/",
    ):
        assert part in msg
    assert "gcloud compute backend-services describe NAME --global --format='value(id)'" in msg


def test_a_near_miss_is_not_suggested_when_the_key_is_already_there(tmp_path: Path) -> None:
    (msg,) = problems(check(tmp_path, GOOD + "tenants: x\n"))
    assert msg == "tenants: unknown key"


@pytest.mark.parametrize(
    "policy, expected",
    [
        ("roles: {r: [view]}\nbinding: []\n", "binding: unknown key: did you mean bindings?"),
        (
            "roles: {r: [view]}\nbindings: [{tenant: team-a, rol: r, members: []}]\n",
            "bindings[0].rol: unknown key: did you mean role?",
        ),
    ],
)
def test_policy_near_misses_are_named_too(tmp_path: Path, policy: str, expected: str) -> None:
    r = check(tmp_path, GOOD, policy=policy)
    assert r.returncode == 3 and any(expected in p for p in problems(r)), r.stderr


@pytest.mark.parametrize("broken", ["tenant: a\niap: {audiences: [x]\n", "listen: [\n", "a: b\n\tc: d\n"])
def test_a_yaml_syntax_error_is_reported_alone(tmp_path: Path, broken: str) -> None:
    r = check(tmp_path, broken)
    (msg,) = problems(r)
    assert r.returncode == 3 and "is not valid YAML at line" in msg and ", column " in msg, r.stderr


def test_a_policy_that_cannot_be_read_is_reported_alone(tmp_path: Path) -> None:
    r = check(tmp_path, GOOD.replace("policy_file: policy.yaml", "policy_file: missing.yaml"))
    (msg,) = problems(r)
    assert r.returncode == 3 and "missing.yaml" in msg and "cannot be read (No such file or directory)" in msg


def test_refusing_everything_on_purpose_is_a_policy_without_bindings(tmp_path: Path) -> None:
    r = check(tmp_path, GOOD, policy="# nobody, on purpose\nbindings: []\n")
    assert r.returncode == 0, r.stderr
    assert "warning: no binding names tenant team-a: every request will be refused" in r.stderr


@pytest.mark.parametrize(
    "audience, why",
    [
        (
            "/projects/123456789012/global/backendServices/1111111111111111111",
            "placeholder (123456789012 counts up)",
        ),
        ("/projects/731246509812/global/backendServices/2222222222222222222", "repeats one digit"),
        (dev.DEV_AUDIENCE, "is the dev audience of dev-iap and dev-token"),
        ("/projects/731246509812/apps/my-project", "a placeholder"),
    ],
)
def test_placeholder_audiences_warn_loudly(tmp_path: Path, audience: str, why: str) -> None:
    config = GOOD.replace("/projects/731246509812/global/backendServices/6817243950183374052", audience)
    r = check(tmp_path, config)
    assert r.returncode == 0 and "ok (" in r.stdout
    (warning,) = r.stderr.splitlines()
    assert warning.startswith(f"warning: iap.audiences[0]: {audience!r} ") and why in warning
    assert (
        "every request through IAP gets 401 wrong audience" in warning
        and "backend-services describe" in warning
    )
    strict = check(tmp_path, config, "--strict")
    assert strict.returncode == 3 and "1 warning(s), failing because of --strict" in strict.stderr


@pytest.mark.parametrize(
    "audience",
    [
        "/projects/731246509812/global/backendServices/6817243950183374052",
        "/projects/731246509812/regions/europe-west4/backendServices/6817243950183374052",
        "/projects/731246509812/apps/ml-platform-prod",
    ],
)
def test_real_audiences_of_each_shape_are_accepted_quietly(tmp_path: Path, audience: str) -> None:
    r = check(
        tmp_path, GOOD.replace("/projects/731246509812/global/backendServices/6817243950183374052", audience)
    )
    assert (r.returncode, r.stderr) == (0, "")


# -- one line, never a traceback, and an exit code that says whose mistake ----------------------------


def test_command_line_mistakes_exit_2_config_mistakes_exit_3(tmp_path: Path) -> None:
    for args in (["check-config"], ["check-config", "--config"], ["nosuch"], ["routes", "--colour"], []):
        r = run(*args)
        assert r.returncode == 2 and "usage:" in r.stderr and "Traceback" not in r.stderr, args
    (tmp_path / "bad.yaml").write_text("tenant: A\n")
    assert run("check-config", "--config", str(tmp_path / "bad.yaml")).returncode == 3
    assert run("check-config", "--config", str(tmp_path)).returncode == 3  # a directory
    r = run("explain", "--config", str(tmp_path / "no-such-dir" / "p.yaml"), "--as", "a@b.c", "/")
    assert r.returncode == 3 and "cannot be read (No such file or directory)" in r.stderr


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`ray-iap-proxy routes | head -1`: the reader is gone before the writer is done."""
    for args in (["routes"], ["routes", "--json"], ["schema"]):
        read_end, write_end = os.pipe()
        os.close(read_end)  # as `head` does once it has its line
        with os.fdopen(write_end, "wb") as out:
            r = subprocess.run(
                [sys.executable, "-m", "proxy", *args], stdout=out, stderr=subprocess.PIPE, text=True,
                timeout=60, cwd=ROOT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        assert (r.returncode, r.stderr) == (141, ""), args


def test_head_of_routes_through_the_console_script() -> None:
    script = Path(sys.executable).parent / "ray-iap-proxy"
    proc = subprocess.Popen([script, "routes"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=60) in (0, 141) and b"Traceback" not in err
    assert first.startswith(b"# Ray 2.60.0 dashboard routes: 69.")


def _listening_socket() -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def test_serve_on_a_port_in_use_is_one_line_and_exit_4(tmp_path: Path) -> None:
    with _listening_socket() as taken:
        port = taken.getsockname()[1]
        (tmp_path / "ray_token").write_text("t\n")
        config = GOOD.replace("127.0.0.1:8265", f"127.0.0.1:{port}").replace(
            "iap:\n", "iap:\n  jwks_url: http://127.0.0.1:9/jwks.json\n"
        )
        r = check(tmp_path, config + "ray_token_file: ray_token\n")
        assert r.returncode == 0, r.stderr
        r = run("serve", "--config", str(tmp_path / "proxy.yaml"))
    assert r.returncode == 4, r.stderr
    (line,) = [ln for ln in r.stderr.splitlines() if "ray-iap-proxy:" in ln]
    assert "cannot listen" in line and str(port) in line and "another process holds that port" in line
    assert "Traceback" not in r.stderr


def test_serve_with_an_unreadable_ray_token_is_a_config_error(tmp_path: Path) -> None:
    r = check(tmp_path, GOOD + "ray_token_file: nope\n")
    assert r.returncode == 0
    r = run("serve", "--config", str(tmp_path / "proxy.yaml"))
    assert r.returncode == 3 and "ray_token_file: " in r.stderr and "No such file or directory" in r.stderr
    assert "Traceback" not in r.stderr


def test_ctrl_c_is_one_line_and_exit_130(tmp_path: Path) -> None:
    """Interrupted while `serve` waits for its Ray token (a FIFO nobody writes yet)."""
    fifo = tmp_path / "ray_token"
    os.mkfifo(fifo)
    check(tmp_path, GOOD + "ray_token_file: ray_token\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "serve", "--config", str(tmp_path / "proxy.yaml")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:  # the proxy has opened the FIFO for reading once a writer can open it
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "serve never read its token"
                time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        os.close(writer)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130 and err.strip().endswith("ray-iap-proxy: interrupted"), err
    assert "Traceback" not in err


# -- the CLI of a tool people like --------------------------------------------------------------------


def test_version() -> None:
    r = run("--version")
    assert r.returncode == 0 and re.fullmatch(
        r"ray-iap-proxy \d+\.\d+\.\d+\S* \(route table: Ray 2\.60\.0\)\n", r.stdout
    )


def _subcommands() -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every command, and every command of a command group (`audit records`), by its words."""
    from proxy.cli import parser

    out: dict[tuple[str, ...], argparse.ArgumentParser] = {}
    todo: list[tuple[tuple[str, ...], argparse.ArgumentParser]] = [((), parser())]
    while todo:
        path, p = todo.pop()
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    out[(*path, name)] = child
                    todo.append(((*path, name), child))
    return out


def test_every_option_has_help_and_says_its_default() -> None:
    commands = _subcommands()
    expected = {"serve", "check-config", "explain", "routes", "schema", "dev-keygen", "dev-token", "dev-iap"}
    assert {(name,) for name in expected | {"dev-config"}} <= set(commands)
    top = run("--help").stdout
    for path, sub in commands.items():
        assert len(path) > 1 or path[0] in top
        text = " ".join(run(*path, "--help", env={"COLUMNS": "400"}).stdout.split())
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue  # a group's commands are checked as commands of their own
            assert action.help, f"{' '.join(path)} {action.dest}: no help"
            if action.option_strings and action.default not in (None, False):
                assert f"(default: {action.default})" in text, f"{' '.join(path)} {action.option_strings}"


def test_routes_has_a_header_and_fits_a_terminal() -> None:
    master, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "routes"],
        stdout=child,
        stderr=child,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child side closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    lines = b"".join(chunks).decode().splitlines()
    assert lines[1].split() == ["METHOD", "PATH", "VERB", "NOTE"]
    assert len(lines) == 2 + 69 and max(len(line) for line in lines) <= 80
    assert any(
        line.startswith("GET     /api/jobs/{job_or_submission_id}/logs/tail") and "WebSocket" in line
        for line in lines
    )
    piped = run("routes").stdout.splitlines()  # not a terminal: nothing is cut
    assert any(
        "answered by the proxy: sign-in is IAP's; Ray's cookie is never issued" in line for line in piped
    )


# -- explain, like kubectl auth can-i -------------------------------------------------------------------


def test_explain_yes_no_and_quiet() -> None:
    base = ("explain", "--config", "config/proxy.yaml", "--as", "bob@example.com")
    r = run(*base, "--yes-no", "/api/jobs/")
    assert (r.returncode, r.stdout, r.stderr) == (0, "yes\n", "")
    r = run(*base, "--yes-no", "--method", "POST", "/api/jobs/")
    assert (r.returncode, r.stdout) == (1, "no\n")
    assert r.stderr == "403 verb submit is not granted by role(s) viewer in tenant team-a\n"
    r = run(*base, "-q", "--method", "post", "/api/jobs/")
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "")


def test_explain_reduces_a_url_to_its_target() -> None:
    url = "https://ray-team-a.example.com/api/jobs/raysubmit_1?limit=5#top"
    r = run("explain", "--config", "config/proxy.yaml", "--as", "bob@example.com", url)
    out = json.loads(r.stdout)
    assert (out["target"], out["url"], out["route"]) == (
        "/api/jobs/raysubmit_1?limit=5",
        url,
        "/api/jobs/{job_or_submission_id}",
    )
    assert r.returncode == 0
    r = run("explain", "--config", "config/proxy.yaml", "--as", "bob@example.com", "https://ray.example.com")
    assert json.loads(r.stdout)["target"] == "/"
    r = run("explain", "--config", "config/proxy.yaml", "--as", "bob@example.com", "ftp://x/y")
    assert r.returncode == 2 and "must be a path starting with / or an http(s) URL" in r.stderr


def test_explain_list_says_every_verb() -> None:
    r = run("explain", "--config", "config/proxy.yaml", "--as", "bob@example.com", "--list")
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and lines[0] == "# bob@example.com in tenant team-a"
    assert lines[1].split() == ["VERB", "ALLOWED", "ROUTES", "REASON"]
    rows = {line.split()[0]: line.split()[1] for line in lines[2:]}
    assert rows == {
        "view": "yes",
        "logs": "no",
        "submit": "no",
        "stop": "no",
        "delete": "no",
        "serve": "no",
        "debug": "no",
        "client": "no",
    }
    data = json.loads(
        run(
            "explain", "--config", "config/proxy.yaml", "--as", "alice@example.com", "--list", "--json"
        ).stdout
    )
    granted = {row["verb"] for row in data["verbs"] if row["allowed"]}
    assert granted == {"view", "logs", "submit", "stop", "delete"}


def test_explain_list_agrees_with_single_requests() -> None:
    """--list asks the same authorizer: each verb's answer is what a request of that verb gets."""
    listed = json.loads(
        run("explain", "--config", "config/proxy.yaml", "--as", "bob@example.com", "--list", "--json").stdout
    )
    allowed = {row["verb"]: row["allowed"] for row in listed["verbs"]}
    for method, path, verb in (
        ("GET", "/api/jobs/", "view"),
        ("POST", "/api/jobs/", "submit"),
        ("GET", "/api/v0/logs", "logs"),
    ):
        one = json.loads(
            run(
                "explain",
                "--config",
                "config/proxy.yaml",
                "--as",
                "bob@example.com",
                "--method",
                method,
                path,
            ).stdout
        )
        assert one["verb"] == verb and (one["decision"] == "allow") == allowed[verb]


def test_explain_for_another_tenant_reviews_a_shared_policy(tmp_path: Path) -> None:
    check(tmp_path, GOOD)
    cfg = str(tmp_path / "proxy.yaml")
    r = run("explain", "--config", cfg, "--as", "mallory@example.com", "--yes-no", "/api/jobs/")
    assert r.stdout == "no\n" and "has no role in tenant team-a" in r.stderr
    r = run(
        "explain",
        "--config",
        cfg,
        "--as",
        "mallory@example.com",
        "--tenant",
        "team-b",
        "--method",
        "POST",
        "/api/jobs/",
    )
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["tenant"] == "team-b" and out["decision"] == "allow"
    r = run("explain", "--config", cfg, "--as", "m@x.y", "--tenant", "Team_B", "/")
    assert r.returncode == 2 and "--tenant: 'Team_B' is not a Kubernetes namespace name" in r.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--list", "/api/jobs/"], "give one request target, or --list (not both)"),
        ([], "give one request target, or --list (not both)"),
        (["--json", "/api/jobs/"], "--json: is for --list"),
        (["--yes-no", "-q", "/"], "not allowed with argument"),
    ],
)
def test_explain_usage_mistakes(args: list[str], message: str) -> None:
    r = run("explain", "--config", "config/proxy.yaml", "--as", "bob@example.com", *args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_serve_logs_a_placeholder_audience_at_start_up(tmp_path: Path) -> None:
    """The overlays ship placeholders (the backend service exists only after the first apply): the pod
    starts, fails closed, and its log says why at once."""
    with _listening_socket() as taken:  # so that serve stops right after its start-up checks
        config = GOOD.replace("127.0.0.1:8265", f"127.0.0.1:{taken.getsockname()[1]}").replace(
            "/projects/731246509812/global/backendServices/6817243950183374052",
            "/projects/123456789012/global/backendServices/1111111111111111111",
        )
        (tmp_path / "ray_token").write_text("t\n")
        check(
            tmp_path,
            config.replace("iap:\n", "iap:\n  jwks_url: http://127.0.0.1:9/k\n")
            + "ray_token_file: ray_token\n",
        )
        r = run("serve", "--config", str(tmp_path / "proxy.yaml"))
    assert r.returncode == 4
    (warning,) = [ln for ln in r.stderr.splitlines() if "looks like a placeholder" in ln]
    assert "WARNING" in warning.upper() and "every request through IAP gets 401 wrong audience" in warning


def test_explain_takes_the_credential_kind_and_ray_client_methods(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "roles: {operator: [view, submit], engineer: [view, client]}\n"
        "bindings:\n"
        '  - {tenant: team-a, role: operator, members: ["system:ray-token"]}\n'
        '  - {tenant: team-a, role: engineer, members: ["user:alice@example.com"]}\n'
    )
    config = tmp_path / "proxy.yaml"
    config.write_text(
        Path("config/proxy.yaml").read_text().replace("policy_file: policy.yaml", f"policy_file: {policy}")
    )
    ray = json.loads(
        run(
            "explain",
            "--config",
            str(config),
            "--as",
            "x@example.com",
            "--credential",
            "ray_token",
            "--method",
            "POST",
            "/api/jobs/",
        ).stdout
    )
    assert (ray["identity"], ray["credential"], ray["decision"]) == ("system:ray-token", "ray_token", "allow")
    grpc = json.loads(
        run(
            "explain",
            "--config",
            str(config),
            "--as",
            "alice@example.com",
            "--credential",
            "google_id_token",
            "/ray.rpc.RayletDataStreamer/Datapath",
        ).stdout
    )
    assert (grpc["transport"], grpc["verb"], grpc["status"], grpc["credential"]) == (
        "grpc",
        "client",
        "OK",
        "google_id_token",
    )
    refused = json.loads(
        run(
            "explain", "--config", str(config), "--as", "alice@example.com", "/ray.rpc.RayletDriver/Nope"
        ).stdout
    )
    assert refused["status"] == "FAILED_PRECONDITION" and "not a known Ray route" in refused["reason"]
