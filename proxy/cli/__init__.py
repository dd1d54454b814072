"""argv -> command. Every command is one function returning an exit code.

ray-iap-proxy serve --config FILE
ray-iap-proxy check-config --config FILE
ray-iap-proxy explain --config FILE --email EMAIL [--hd DOMAIN] [--method GET] PATH
ray-iap-proxy routes [--json]
ray-iap-proxy schema [config|policy]
ray-iap-proxy dev-keygen --out KEY.pem
ray-iap-proxy dev-token --key KEY.pem --as EMAIL [--audience AUD] [--lifetime S] [--hd DOMAIN]
ray-iap-proxy dev-iap --key KEY.pem --as EMAIL --listen HOST:PORT --upstream URL [--audience AUD]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import commands, devcmds
from .explain import explain

__all__ = ["explain", "main", "parser"]


def parser() -> argparse.ArgumentParser:
    from ..dev import DEV_AUDIENCE

    p = argparse.ArgumentParser(prog="ray-iap-proxy", description="IAP-authenticating proxy for a Ray head")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the proxy")
    s.add_argument("--config", required=True)
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    s.set_defaults(func=commands.serve)

    s = sub.add_parser("check-config", help="validate the config and its policy (exit 2 on problems)")
    s.add_argument("--config", required=True)
    s.set_defaults(func=commands.check_config)

    s = sub.add_parser("explain", help="what would this identity get for this request?")
    s.add_argument("--config", required=True)
    s.add_argument("--email", required=True)
    s.add_argument("--hd", help="hosted domain claim, for domain: bindings")
    s.add_argument("--method", default="GET")
    s.add_argument("path")
    s.set_defaults(func=commands.explain_cmd)

    s = sub.add_parser("routes", help="print the route table")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=commands.routes)

    s = sub.add_parser("schema", help="print the JSON Schema of the config file or of the policy file")
    s.add_argument("document", nargs="?", choices=["config", "policy"], default="config")
    s.set_defaults(func=commands.schema)

    s = sub.add_parser("dev-keygen", help="write a new ES256 (P-256) private key")
    s.add_argument("--out", required=True)
    s.set_defaults(func=devcmds.keygen)

    for name, func, text in (
        ("dev-token", devcmds.token, "print one IAP-shaped assertion"),
        ("dev-iap", devcmds.iap, "loopback stand-in for IAP"),
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
