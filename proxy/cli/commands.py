"""The operator's commands: serve, check-config, routes, schema."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys

from ..authz.routes import RAY_ROUTES, RAY_VERSION
from ..errors import ConfigError
from ..settings import Settings
from . import checks
from .common import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    CliError,
    add_config,
    add_parser,
    fit,
    load,
    terminal_width,
)

log = logging.getLogger("ray_iap_proxy")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = add_parser(sub, "serve", "run the proxy")
    add_config(s)
    s.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"], help="application logs"
    )
    s.add_argument(
        "--log-format",
        default="auto",
        choices=["auto", "text", "json"],
        help="application logs on stderr: json (severity, message, time) for Cloud Logging, text for a "
        "person; auto: text on a terminal, json otherwise",
    )
    s.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="proxy processes sharing the port, under one supervisor (default: `workers` in the config)",
    )
    s.set_defaults(func=serve)

    s = add_parser(
        sub,
        "check-config",
        "validate the config and its policy (exit 0, or 3 with every problem)",
        "Check the config and the policy it names, offline, as `serve` would at start-up: every problem "
        "is printed with its key path and value (exit 3). Warnings (placeholder audiences, no binding for "
        "this tenant) do not fail the check unless --strict.",
    )
    add_config(s)
    s.add_argument("--strict", action="store_true", help="warnings fail the check too (exit 3), e.g. in CI")
    s.set_defaults(func=check_config)

    s = add_parser(sub, "routes", "print the Ray route table with each route's verb")
    s.add_argument("--json", action="store_true", help="the table as JSON, for scripts")
    s.set_defaults(func=routes)

    s = add_parser(sub, "schema", "print the JSON Schema of the config file or of the policy file")
    s.add_argument("document", nargs="?", choices=["config", "policy"], default="config", help="which file")
    s.set_defaults(func=schema)


def serve(args: argparse.Namespace) -> int:
    from ..app import serve as run
    from ..telemetry.logs import setup_logging
    from ..upstream.ray_token import RayToken
    from ..workers import Worker, die_with_supervisor, supervise

    setup_logging(getattr(logging, args.log_level.upper()), args.log_format)
    settings, policy = load(args.config)
    try:
        RayToken(settings.ray_token_file).load()
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise CliError(
            f"ray_token_file: {str(settings.ray_token_file)!r} cannot be used ({why})", EXIT_CONFIG
        ) from None
    worker = Worker.from_environ(os.environ)
    if worker is None:  # the supervisor (or the only process) says it once
        for warning in checks.warnings(settings, policy):
            log.warning("%s: %s", args.config, warning)
    count = settings.workers if args.workers is None else args.workers
    if worker is None and not 1 <= count <= 64:
        raise CliError(f"--workers: {count} is not between 1 and 64", EXIT_CONFIG)
    if worker is None and count > 1:
        argv = [sys.executable, "-m", "proxy", "serve", "--config", str(args.config)]
        argv += ["--log-level", args.log_level, "--log-format", args.log_format]
        where = settings.metrics_listen
        metrics = (where.host, where.port) if where is not None else None
        return supervise(argv, count, settings.shutdown_grace_seconds, metrics)
    if worker is not None:
        die_with_supervisor()
    try:
        run(settings, worker=worker)
    except ConfigError as exc:  # the OTEL_* environment, read when the app is built
        raise CliError("; ".join(exc.problems), EXIT_CONFIG) from None
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise CliError(f"cannot listen: {_bind_error(exc)}", EXIT_UNAVAILABLE) from None
        raise
    return EXIT_OK


def _bind_error(exc: OSError) -> str:
    text = str(exc)
    if exc.errno == errno.EADDRINUSE:
        text += " (another process holds that port: stop it, or change `listen` in the config)"
    return text


def check_config(args: argparse.Namespace) -> int:
    settings, policy = load(args.config)
    bindings = policy.bindings_for(settings.tenant)
    print(
        f"{args.config}: ok (tenant {settings.tenant}, {len(policy.roles)} role(s), "
        f"{len(bindings)} binding(s) for this tenant, {len(settings.iap.audiences)} audience(s))"
    )
    found = checks.warnings(settings, policy)
    for warning in found:
        print(f"warning: {warning}", file=sys.stderr)
    if found and args.strict:
        print(f"{args.config}: {len(found)} warning(s), failing because of --strict", file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


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
    width = terminal_width()
    path_width = max(len(r.pattern) for r in RAY_ROUTES)
    if width is not None:
        path_width = min(path_width, max(width - 40, 24))
    lines = [
        f"# Ray {RAY_VERSION} dashboard routes: {len(rows)}. HEAD is classified as GET; a request "
        "matching no row is refused. DENY: refused whatever the role.",
        f"{'METHOD':<7} {'PATH':<{path_width}} {'VERB':<7} NOTE",
    ]
    for row, route in zip(rows, RAY_ROUTES, strict=True):
        verb = row["verb"] or "DENY"
        notes = [n for n in ("WebSocket" if route.websocket else "", route.note) if n]
        lines.append(
            f"{row['method']:<7} {route.pattern:<{path_width}} {verb:<7} {'; '.join(notes)}".rstrip()
        )
    for line in lines:
        print(fit(line, width) if width is not None else line)
    return EXIT_OK


def schema(args: argparse.Namespace) -> int:
    from ..authz.policy_file import PolicyDoc

    model = Settings if args.document == "config" else PolicyDoc
    doc = model.model_json_schema()
    doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    doc["title"] = f"ray-iap-proxy {args.document} file"
    print(json.dumps(doc, indent=2))
    return EXIT_OK
