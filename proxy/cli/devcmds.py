"""The developer's commands: dev-keygen, dev-token, dev-iap and dev-config — stand-ins for Google on a
laptop, never for production. Keys are never created or replaced behind anyone's back."""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey

from ..dev import DEV_AUDIENCE, JWKS_PATH
from ..settings import Iap
from .common import EXIT_OK, EXIT_UNAVAILABLE, CliError, add_parser, usage_error

IAP_MAX_LIFETIME = int(Iap.model_fields["max_token_lifetime_seconds"].default)
DEV_IAP_LISTEN = "127.0.0.1:8080"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from . import devconfig

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
    devconfig.register(sub)


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
