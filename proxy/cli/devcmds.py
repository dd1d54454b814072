"""The developer's commands: dev-keygen, dev-token, dev-iap (stand-ins for Google, never for production)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .commands import EXIT_OK, EXIT_USAGE


def keygen(args: argparse.Namespace) -> int:
    from ..dev import generate_key, key_id

    key = generate_key(Path(args.out))
    print(f"wrote {args.out} (kid {key_id(key)})")
    return EXIT_OK


def token(args: argparse.Namespace) -> int:
    from ..dev import load_key, mint

    print(mint(load_key(Path(args.key)), args.email, args.audience, lifetime=args.lifetime, hd=args.hd))
    return EXIT_OK


def iap(args: argparse.Namespace) -> int:
    from aiohttp import web

    from ..dev import JWKS_PATH, dev_iap_app, generate_key, load_key, require_loopback

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
