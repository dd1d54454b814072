"""The operator's commands: serve, check-config, explain, routes, schema."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

from .. import settings as settings_mod
from ..authz.policy import EMPTY_POLICY, Policy
from ..authz.policy_file import PolicyDoc, read_policy
from ..authz.routes import RAY_ROUTES, RAY_VERSION
from ..errors import ConfigError
from ..settings import Settings

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def load(path: str) -> tuple[Settings, Policy]:
    """The config and its policy, or every problem printed and exit 2."""
    try:
        settings = settings_mod.load(path)
        policy = read_policy(settings.policy_file) if settings.policy_file is not None else EMPTY_POLICY
    except ConfigError as exc:
        print(f"{path}: {len(exc.problems)} problem(s):", file=sys.stderr)
        for p in exc.problems:
            print(f"  - {p}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    return settings, policy


def serve(args: argparse.Namespace) -> int:
    from ..app import serve as run
    from ..telemetry.logs import setup_logging
    from ..upstream.ray_token import RayToken

    setup_logging(getattr(logging, args.log_level.upper()))
    settings, _ = load(args.config)
    try:
        RayToken(settings.ray_token_file).load()
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"ray_token_file: {str(settings.ray_token_file)!r} cannot be used ({why})", file=sys.stderr)
        return EXIT_USAGE
    run(settings)
    return EXIT_OK


def check_config(args: argparse.Namespace) -> int:
    settings, policy = load(args.config)
    bindings = policy.bindings_for(settings.tenant)
    print(
        f"{args.config}: ok (tenant {settings.tenant}, {len(policy.roles)} role(s), "
        f"{len(bindings)} binding(s) for this tenant, {len(settings.iap.audiences)} audience(s))"
    )
    if not bindings:
        print(
            f"warning: no binding names tenant {settings.tenant}: every request will be refused",
            file=sys.stderr,
        )
    return EXIT_OK


def explain_cmd(args: argparse.Namespace) -> int:
    from .explain import explain

    settings, policy = load(args.config)
    result = asyncio.run(explain(settings, policy, args.email, args.method.upper(), args.path, args.hd))
    print(json.dumps(result, indent=2))
    return EXIT_OK if result["decision"] == "allow" else EXIT_FAIL


def routes(args: argparse.Namespace) -> int:
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


def schema(args: argparse.Namespace) -> int:
    model = Settings if args.document == "config" else PolicyDoc
    doc = model.model_json_schema()
    doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    doc["title"] = f"ray-iap-proxy {args.document} file"
    print(json.dumps(doc, indent=2))
    return EXIT_OK
