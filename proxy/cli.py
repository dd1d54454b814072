"""argv -> config -> app -> run.

ray-iap-proxy serve --config FILE
ray-iap-proxy check-config --config FILE
ray-iap-proxy explain --config FILE --email EMAIL [--hd DOMAIN] [--method GET] PATH
ray-iap-proxy routes [--json]
ray-iap-proxy dev-keygen --out KEY.pem
ray-iap-proxy dev-token --key KEY.pem --as EMAIL [--audience AUD] [--lifetime S] [--hd DOMAIN]
ray-iap-proxy dev-iap --key KEY.pem --as EMAIL --listen HOST:PORT --upstream URL [--audience AUD]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from . import config as config_mod
from .authz.routes import DEFAULT_TABLE, RAY_ROUTES, RAY_VERSION
from .authz.target import BadTarget, parse_target
from .model import Action, Identity

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _load(path: str) -> config_mod.Config:
    try:
        return config_mod.load(path)
    except config_mod.ConfigError as exc:
        print(f"{path}: {len(exc.problems)} problem(s):", file=sys.stderr)
        for p in exc.problems:
            print(f"  - {p}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


def cmd_serve(args: argparse.Namespace) -> int:
    from .app import serve
    from .telemetry import setup_logging

    setup_logging(getattr(logging, args.log_level.upper()))
    cfg = _load(args.config)
    try:
        cfg.read_ray_token()
    except (OSError, config_mod.ConfigError) as exc:
        print(f"ray_token_file: {str(cfg.ray_token_file)!r} cannot be read ({exc})", file=sys.stderr)
        return EXIT_USAGE
    serve(cfg)
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    bindings = [b for b in cfg.policy.bindings if b.tenant == cfg.tenant]
    print(
        f"{args.config}: ok (tenant {cfg.tenant}, {len(cfg.policy.roles)} role(s), "
        f"{len(bindings)} binding(s) for this tenant, {len(cfg.iap.audiences)} audience(s))"
    )
    if not bindings:
        print(
            f"warning: no binding names tenant {cfg.tenant}: every request will be refused", file=sys.stderr
        )
    return EXIT_OK


def explain(
    cfg: config_mod.Config, email: str, method: str, target: str, hd: str | None = None
) -> dict[str, object]:
    """What `email` would get for `method target` under `cfg`, without any network."""
    identity = Identity(email=email.lower(), subject="explain", hosted_domain=hd.lower() if hd else None)
    out: dict[str, object] = {
        "identity": identity.email,
        "hosted_domain": identity.hosted_domain,
        "tenant": cfg.tenant,
        "method": method,
        "target": target,
    }
    try:
        path = parse_target(target, cfg.limits.max_target_length).path
    except BadTarget as exc:
        return {
            **out,
            "route": None,
            "verb": None,
            "decision": "deny",
            "status": exc.status,
            "reason": exc.reason,
        }
    route = DEFAULT_TABLE.classify(method, path)
    if route is None:
        return {
            **out,
            "route": None,
            "verb": None,
            "decision": "deny",
            "status": 403,
            "reason": f"{method} {path} is not a known Ray route",
        }
    out.update(route=route.pattern, verb=str(route.verb) if route.verb else None)
    if route.action is Action.DENY or route.verb is None:
        return {**out, "decision": "deny", "status": 403, "reason": f"{route.pattern} is internal to Ray"}
    d = cfg.policy.decide(identity, cfg.tenant, route.verb)
    granted = sorted(str(v) for v in cfg.policy.verbs_for(identity, cfg.tenant))
    return {
        **out,
        "decision": d.outcome.value,
        "status": 200 if d.allowed else 403,
        "reason": d.reason,
        "granted_verbs": granted,
    }


def cmd_explain(args: argparse.Namespace) -> int:
    result = explain(_load(args.config), args.email, args.method.upper(), args.path, args.hd)
    print(json.dumps(result, indent=2))
    return EXIT_OK if result["decision"] == "allow" else EXIT_FAIL


def cmd_routes(args: argparse.Namespace) -> int:
    rows = [
        {
            "method": r.method,
            "path": r.pattern,
            "verb": str(r.verb) if r.verb else None,
            "action": r.action.value,
            "websocket": r.websocket,
            "note": r.note,
        }
        for r in RAY_ROUTES
    ]
    if args.json:
        print(json.dumps({"ray_version": RAY_VERSION, "routes": rows}, indent=2))
        return EXIT_OK
    print(
        f"# Ray {RAY_VERSION} dashboard routes ({len(rows)}); HEAD is classified as GET; "
        "anything else is denied"
    )
    for row in rows:
        verb = row["verb"] or "DENY"
        extra = " (ws)" if row["websocket"] else " (answered by proxy)" if row["action"] == "local" else ""
        print(f"{row['method']:<7} {row['path']:<78} {verb}{extra}")
    return EXIT_OK


def cmd_dev_keygen(args: argparse.Namespace) -> int:
    from .dev import generate_key, key_id

    key = generate_key(Path(args.out))
    print(f"wrote {args.out} (kid {key_id(key)})")
    return EXIT_OK


def cmd_dev_token(args: argparse.Namespace) -> int:
    from .dev import load_key, mint

    print(mint(load_key(Path(args.key)), args.email, args.audience, lifetime=args.lifetime, hd=args.hd))
    return EXIT_OK


def cmd_dev_iap(args: argparse.Namespace) -> int:
    from aiohttp import web

    from .dev import JWKS_PATH, dev_iap_app, generate_key, load_key, require_loopback

    host, _, port = args.listen.rpartition(":")
    try:
        require_loopback(host)
    except ValueError as exc:
        print(f"--listen: {exc}", file=sys.stderr)
        return EXIT_USAGE
    key_path = Path(args.key)
    key = load_key(key_path) if key_path.exists() else generate_key(key_path)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s dev-iap %(message)s")
    print(
        f"dev-iap: signing every request as {args.email} -> {args.upstream}; "
        f"key set at http://{args.listen}{JWKS_PATH}",
        flush=True,
    )
    web.run_app(
        dev_iap_app(key, args.email, args.upstream, args.audience, args.hd),
        host=host.strip("[]"),
        port=int(port),
        print=None,
        access_log=None,
        shutdown_timeout=5,
    )
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    from .dev import DEV_AUDIENCE

    p = argparse.ArgumentParser(prog="ray-iap-proxy", description="IAP-authenticating proxy for a Ray head")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the proxy")
    s.add_argument("--config", required=True)
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("check-config", help="validate the config and its policy (exit 2 on problems)")
    s.add_argument("--config", required=True)
    s.set_defaults(func=cmd_check_config)

    s = sub.add_parser("explain", help="what would this identity get for this request?")
    s.add_argument("--config", required=True)
    s.add_argument("--email", required=True)
    s.add_argument("--hd", help="hosted domain claim, for domain: bindings")
    s.add_argument("--method", default="GET")
    s.add_argument("path")
    s.set_defaults(func=cmd_explain)

    s = sub.add_parser("routes", help="print the route table")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_routes)

    s = sub.add_parser("dev-keygen", help="write a new ES256 (P-256) private key")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_dev_keygen)

    for name, func, text in (
        ("dev-token", cmd_dev_token, "print one IAP-shaped assertion"),
        ("dev-iap", cmd_dev_iap, "loopback stand-in for IAP"),
    ):
        s = sub.add_parser(name, help=text)
        s.add_argument("--key", required=True)
        s.add_argument("--as", dest="email", required=True)
        s.add_argument("--audience", default=DEV_AUDIENCE)
        s.add_argument("--hd")
        if name == "dev-token":
            s.add_argument("--lifetime", type=int, default=600)
        else:
            s.add_argument("--listen", default="127.0.0.1:8080")
            s.add_argument("--upstream", required=True)
        s.set_defaults(func=func)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
