"""The exit codes and the one error of the command line, in a module that imports nothing heavy (so
that `main` catches Ctrl-C even while the rest is still being imported).

    0    ok; for `explain`: allowed (yes)
    1    `explain`: refused (no)
    2    the command line is wrong: an unknown option, a missing argument, a bad value, a file or
         directory named on the command line that is missing or unusable
    3    the config is wrong: the config file, its policy, or a file the config names
    4    the machine is in the way: an address already in use, a port that cannot be bound
    130  interrupted (Ctrl-C)
    141  stdout was closed early (`ray-iap-proxy routes | head -1`): the rest is not printed
"""

from __future__ import annotations

from typing import NoReturn

EXIT_OK, EXIT_NO, EXIT_USAGE, EXIT_CONFIG, EXIT_UNAVAILABLE = 0, 1, 2, 3, 4
EXIT_INTERRUPTED, EXIT_PIPE = 130, 141

PROG = "ray-iap-proxy"


class CliError(Exception):
    """A mistake a person made, said in one line (no traceback), with the exit code it earns."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def usage_error(option: str, message: str) -> NoReturn:
    """The command line is wrong: `--key: 'x.pem' does not exist (...)`."""
    raise CliError(f"{option}: {message}", EXIT_USAGE)
