"""argv -> command. Each command module registers its subcommands (`register(sub)`) and each command
is one function returning an exit code (`common.py` lists them). A mistake at the command line is one
line on stderr, never a traceback.

    serve · check-config · routes · schema          commands.py
    explain                                          explain_cmd.py (the decision: explain.py)
    dev-keygen · dev-token · dev-iap · dev-config    devcmds.py
    audit                                            audit_cmd.py (the reports: proxy/audit/)

A new command is a module with `register` and one line in COMMANDS.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .errors import EXIT_INTERRUPTED, EXIT_PIPE, PROG, CliError

__all__ = ["main", "parser"]

# modules of this package with a `register(sub)`
COMMANDS = ("commands", "explain_cmd", "devcmds", "audit_cmd")


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    from ..authz.routes import RAY_VERSION

    try:
        ours = dist_version("ray-iap-proxy")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree without installing
        ours = "unknown"
    return f"{PROG} {ours} (route table: Ray {RAY_VERSION})"


def parser() -> argparse.ArgumentParser:
    from importlib import import_module

    from .common import DefaultsHelp

    p = argparse.ArgumentParser(
        prog=PROG,
        description="IAP-authenticating proxy for a Ray head. `ray-iap-proxy COMMAND --help` for each.",
        epilog="exit codes: 0 ok (explain: allowed), 1 explain: refused, 2 the command line is wrong, "
        "3 the config is wrong, 4 an address is in use, 130 interrupted",
        formatter_class=DefaultsHelp,
    )
    p.add_argument("--version", action="version", version=version())
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        import_module(f"{__name__}.{name}").register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:  # everything, imports included, inside: Ctrl-C at any point is one line
        args = parser().parse_args(argv)
        result: int = args.func(args)
        sys.stdout.flush()
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (`routes | head -1`): stop quietly, and keep Python's own flush at exit
        # from failing again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE
    except CliError as exc:
        print(f"{PROG}: {exc.message}", file=sys.stderr)
        return exc.code
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
