"""What every command shares: the exit codes and the one-line error (errors.py), the help formatter
that shows each option's default, loading a config for a command, and fitting a table to the terminal.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence

from ..authz.policy import EMPTY_POLICY, Policy
from ..errors import ConfigError
from ..settings import Settings
from .errors import (
    EXIT_CONFIG,
    EXIT_INTERRUPTED,
    EXIT_NO,
    EXIT_OK,
    EXIT_PIPE,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    PROG,
    CliError,
    usage_error,
)

EXIT_FAIL = EXIT_NO  # older name


class DefaultsHelp(argparse.RawDescriptionHelpFormatter):
    """`--help` says each option's default, where it has one worth saying; descriptions are printed
    as written (they hold examples)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" not in text
            and default not in (None, False, argparse.SUPPRESS)
            and not isinstance(action, argparse._HelpAction | argparse._VersionAction)
            and action.option_strings
        ):
            text += " (default: %(default)s)"
        return text


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str, description: str = ""
) -> argparse.ArgumentParser:
    """A subcommand with the shared help formatter; `summary` is its line in `ray-iap-proxy --help`."""
    return sub.add_parser(
        name, help=summary, description=description or summary, formatter_class=DefaultsHelp
    )


def add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, metavar="FILE", help="the proxy's YAML config file")


def print_problems(path: str, problems: Sequence[str]) -> None:
    print(f"{path}: {len(problems)} problem(s):", file=sys.stderr)
    for problem in problems:
        print(f"  - {problem}", file=sys.stderr)


def load(path: str) -> tuple[Settings, Policy]:
    """The config and its policy, or every problem printed and exit 3 (the config is wrong)."""
    from .. import settings as settings_mod
    from ..authz.policy_file import read_policy

    try:
        settings = settings_mod.load(path)
        policy = read_policy(settings.policy_file) if settings.policy_file is not None else EMPTY_POLICY
    except ConfigError as exc:
        print_problems(path, exc.problems)
        raise SystemExit(EXIT_CONFIG) from None
    return settings, policy


def terminal_width(default: int = 100) -> int | None:
    """The width to fit a table to, or None when stdout is not a terminal (a pipe gets every byte)."""
    if not sys.stdout.isatty():
        return None
    return shutil.get_terminal_size((default, 24)).columns


def fit(text: str, width: int) -> str:
    """`text` cut to `width` characters, the cut shown with an ellipsis."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAIL",
    "EXIT_INTERRUPTED",
    "EXIT_NO",
    "EXIT_OK",
    "EXIT_PIPE",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "PROG",
    "CliError",
    "DefaultsHelp",
    "add_config",
    "add_parser",
    "fit",
    "load",
    "print_problems",
    "terminal_width",
    "usage_error",
]
