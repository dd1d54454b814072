"""`dev-config`: a config, policy, key and Ray token for running the proxy by hand on a laptop, and
the commands that start Ray, dev-iap and the proxy with them."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import textwrap
from pathlib import Path

from ..dev import DEV_AUDIENCE, JWKS_PATH
from .common import EXIT_OK, add_parser, usage_error
from .devcmds import DEV_IAP_LISTEN, _host_port, _write_key


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = add_parser(
        sub,
        "dev-config",
        "write a config, policy, key and Ray token to run the proxy by hand on a laptop",
        "Write DIR/proxy.yaml, DIR/policy.yaml (EMAIL gets the role scientist), DIR/dev-key.pem and "
        "DIR/ray_token, and print the commands that start Ray, dev-iap and the proxy with them. An "
        "existing key or token is kept; existing config files are replaced only with --force.",
    )
    s.add_argument("--out", required=True, metavar="DIR", help="the directory to write into (created)")
    s.add_argument("--as", dest="email", default="alice@example.com", metavar="EMAIL", help="who gets access")
    s.add_argument("--tenant", default="team-a", help="the tenant the config and policy name")
    s.add_argument("--listen", default="127.0.0.1:8265", metavar="HOST:PORT", help="the proxy's address")
    s.add_argument(
        "--iap-listen",
        default=DEV_IAP_LISTEN,
        metavar="HOST:PORT",
        help="dev-iap's address (its key set)",
    )
    s.add_argument("--upstream", default="http://127.0.0.1:18265", metavar="URL", help="the Ray dashboard")
    s.add_argument("--force", action="store_true", help="replace an existing proxy.yaml and policy.yaml")
    s.set_defaults(func=dev_config)


def dev_config(args: argparse.Namespace) -> int:
    from ..dev import require_loopback

    out = Path(args.out)
    _host_port("--listen", args.listen)
    try:
        require_loopback(_host_port("--iap-listen", args.iap_listen)[0])
    except ValueError as exc:
        usage_error("--iap-listen", str(exc))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        usage_error("--out", f"{args.out!r} cannot be created ({exc.strerror or exc})")
    for name in ("proxy.yaml", "policy.yaml"):
        if (out / name).exists() and not args.force:
            usage_error("--out", f"{str(out / name)!r} exists; replace it with --force")
    key = out / "dev-key.pem"
    if not key.exists():
        _write_key(key, "--out")
    ray_token = out / "ray_token"
    if not ray_token.exists():
        ray_token.touch(mode=0o600)
        ray_token.write_text(secrets.token_hex(32) + "\n")
    (out / "policy.yaml").write_text(POLICY.format(tenant=args.tenant, email=args.email.lower()))
    (out / "proxy.yaml").write_text(
        CONFIG.format(
            listen=args.listen,
            upstream=args.upstream,
            tenant=args.tenant,
            audience=DEV_AUDIENCE,
            jwks_url=f"http://{args.iap_listen}{JWKS_PATH}",
        )
    )
    dashboard_port = args.upstream.rstrip("/").rpartition(":")[2]
    bin_dir = _bin_dir()
    print(f"wrote {out / 'proxy.yaml'}, {out / 'policy.yaml'}, {key} and {ray_token}.")
    print(
        "Start Ray (in the background; `ray stop` stops it), then dev-iap and the proxy, each in a shell:\n"
    )
    print(
        textwrap.dedent(f"""\
        RAY_AUTH_MODE=token RAY_AUTH_TOKEN="$(cat {ray_token})" {bin_dir}ray start --head \\
            --dashboard-host 127.0.0.1 --dashboard-port {dashboard_port}
        {bin_dir}ray-iap-proxy dev-iap --key {key} --as {args.email} --listen {args.iap_listen} \\
            --upstream http://{args.listen}
        {bin_dir}ray-iap-proxy serve --config {out / "proxy.yaml"}
        """)
    )
    print(
        f"Then open http://{args.iap_listen} (the dashboard, as {args.email}), or mint a token for the CLI:"
    )
    print(f"  {bin_dir}ray-iap-proxy dev-token --key {key} --as {args.email}")
    return EXIT_OK


def _bin_dir() -> str:
    """Where this interpreter's scripts are (`.venv/bin/`), relative to here when below it."""
    here = Path(sys.executable).parent
    if not (here / "ray-iap-proxy").exists():
        return ""
    rel = os.path.relpath(here)
    return (rel if not rel.startswith("..") else str(here)) + "/"


CONFIG = """\
# Written by `ray-iap-proxy dev-config`, for a laptop: IAP's part is played by dev-iap, which signs
# with {audience!r} (the dev audience; Google never signs it) and serves its key set over loopback.
listen: {listen}
upstream: {upstream}
tenant: {tenant}
iap:
  audiences: ["{audience}"]
  jwks_url: {jwks_url}
ray_token_file: ray_token
policy_file: policy.yaml
shutdown_grace_seconds: 5
"""

POLICY = """\
# Written by `ray-iap-proxy dev-config`: see docs/policy.md.
roles:
  viewer: [view]
  scientist: [view, logs, submit, stop, delete]
bindings:
  - tenant: {tenant}
    role: scientist
    members: ["user:{email}"]
"""
