"""The command line as users run it: subprocesses of `python -m proxy`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestServer

from devkit.config import write_config
from proxy import dev
from proxy.auth.providers.iap import iap_rules
from proxy.auth.verify import verify
from proxy.settings import Iap

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )


def test_check_config_ok_and_problems(tmp_path: Path) -> None:
    r = run("check-config", "--config", "config/proxy.yaml")
    assert r.returncode == 0 and "ok (tenant team-a" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("tenant: A\nupstream: ftp://x\niap: {audiences: []}\nwhat: 1\n")
    r = run("check-config", "--config", str(bad))
    assert r.returncode == 2
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
    assert r.returncode == 2 and "nope.yaml" in r.stderr and "cannot be read" in r.stderr


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
