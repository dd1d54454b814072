"""The developer's commands: dev-keygen, dev-token, dev-iap and dev-config — stand-ins for Google on a
laptop, never for production. Keys are never created or replaced behind anyone's back."""

from __future__ import annotations

import argparse
import errno
import logging
import secrets
import sys
import textwrap
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

from ..dev import DEV_AUDIENCE, JWKS_PATH
from ..settings import Iap
from .common import EXIT_OK, EXIT_UNAVAILABLE, CliError, add_parser, usage_error

IAP_MAX_LIFETIME = int(Iap.model_fields["max_token_lifetime_seconds"].default)
DEV_IAP_LISTEN = "127.0.0.1:8080"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = add_parser(sub, "dev-keygen", "write a new ES256 (P-256) private key for dev-iap and dev-token")
    s.add_argument("--out", required=True, metavar="KEY.pem", help="where to write it (mode 0600)")
    s.add_argument("--force", action="store_true", help="replace an existing file (tokens made with it die)")
    s.set_defaults(func=keygen)

    for name, func, text in (
        ("dev-token", token, "print one IAP-shaped assertion signed with a dev key"),
        ("dev-iap", iap, "loopback stand-in for IAP: signs every request for one identity"),
    ):
        s = add_parser(sub, name, text)
        s.add_argument(
            "--key", required=True, metavar="KEY.pem", help="an existing key (dev-keygen makes one)"
        )
        s.add_argument("--as", dest="email", required=True, metavar="EMAIL", help="the identity to sign for")
        s.add_argument(
            "--audience", default=DEV_AUDIENCE, help="the aud claim; the config's iap.audiences must list it"
        )
        s.add_argument("--hd", metavar="DOMAIN", help="a hosted domain claim, for domain: members")
        if name == "dev-token":
            s.add_argument(
                "--lifetime",
                type=int,
                default=IAP_MAX_LIFETIME,
                metavar="SECONDS",
                help="exp - iat; the proxy refuses more than its iap.max_token_lifetime_seconds "
                f"({IAP_MAX_LIFETIME} by default)",
            )
        else:
            s.add_argument("--listen", default=DEV_IAP_LISTEN, metavar="HOST:PORT", help="loopback only")
            s.add_argument(
                "--upstream", required=True, metavar="URL", help="the proxy, e.g. http://127.0.0.1:8265"
            )
        s.set_defaults(func=func)

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


def _read_key(path: str) -> EllipticCurvePrivateKey:
    from ..dev import load_key

    try:
        return load_key(Path(path))
    except FileNotFoundError:
        usage_error(
            "--key", f"{path!r} does not exist; make one with `ray-iap-proxy dev-keygen --out {path}`"
        )
    except OSError as exc:
        usage_error("--key", f"{path!r} cannot be read ({exc.strerror or exc})")
    except ValueError as exc:
        usage_error("--key", f"{path!r} {exc}")


def _write_key(path: Path, option: str, replace: bool = False) -> EllipticCurvePrivateKey:
    from ..dev import generate_key

    try:
        return generate_key(path, replace=replace)
    except FileExistsError:
        usage_error(
            option, f"{str(path)!r} exists; keep it, or replace it with --force (tokens made with it die)"
        )
    except FileNotFoundError:
        usage_error(option, f"directory {str(path.parent)!r} does not exist")
    except OSError as exc:
        usage_error(option, f"{str(path)!r} cannot be written ({exc.strerror or exc})")


def keygen(args: argparse.Namespace) -> int:
    from ..dev import key_id

    key = _write_key(Path(args.out), "--out", replace=args.force)
    print(f"wrote {args.out} (kid {key_id(key)})")
    return EXIT_OK


def token(args: argparse.Namespace) -> int:
    from ..dev import mint

    if args.lifetime < 1:
        usage_error("--lifetime", f"{args.lifetime} must be at least 1 second")
    key = _read_key(args.key)
    if args.lifetime > IAP_MAX_LIFETIME:
        print(
            f"warning: --lifetime {args.lifetime} is over the {IAP_MAX_LIFETIME} s the proxy accepts by "
            "default: it answers 401 (lifetime out of bounds) unless the config's "
            "iap.max_token_lifetime_seconds allows it",
            file=sys.stderr,
        )
    print(mint(key, args.email, args.audience, lifetime=args.lifetime, hd=args.hd))
    return EXIT_OK


def _host_port(option: str, value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        usage_error(option, f"{value!r} must be HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]"), int(port)


def iap(args: argparse.Namespace) -> int:
    from aiohttp import web

    from ..dev import dev_iap_app, require_loopback

    host, port = _host_port("--listen", args.listen)
    try:
        require_loopback(host)
    except ValueError as exc:
        usage_error("--listen", str(exc))
    if not args.upstream.startswith(("http://", "https://")):
        usage_error("--upstream", f"{args.upstream!r} must be an http:// URL (the proxy)")
    key = _read_key(args.key)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s dev-iap %(message)s")
    print(
        f"dev-iap: signing every request as {args.email} -> {args.upstream}; "
        f"key set at http://{args.listen}{JWKS_PATH}",
        flush=True,
    )
    try:
        web.run_app(
            dev_iap_app(key, args.email, args.upstream, args.audience, args.hd),
            host=host,
            port=port,
            print=None,
            access_log=None,
            shutdown_timeout=5,
        )
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise CliError(
                f"--listen: cannot listen on {args.listen}: {exc.strerror or exc}", EXIT_UNAVAILABLE
            ) from None
        raise
    return EXIT_OK


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
    import os

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
