"""How long the fuzz targets run.

In `make test` (FUZZ_SECONDS unset) each target runs a fixed, derandomized number of examples: the
same inputs every run, a few seconds in all. `make fuzz` sets FUZZ_SECONDS: each target then draws
fresh random batches until that many seconds have passed, and shrinks whatever fails.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

SECONDS = float(os.environ.get("FUZZ_SECONDS") or 0)
F = TypeVar("F", bound=Callable[..., Any])


def fuzz_settings(examples: int) -> Callable[[F], F]:
    if SECONDS:
        return settings(
            max_examples=max(examples, 500),
            deadline=None,
            derandomize=False,
            database=None,
            suppress_health_check=list(HealthCheck),
        )  # type: ignore[no-any-return]
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,  # type: ignore[no-any-return]
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


def run(target: Callable[[], None]) -> int:
    """Run a @given target once, or (under FUZZ_SECONDS) in batches until the budget is spent."""
    if not SECONDS:
        target()
        return 1
    end, rounds = time.monotonic() + SECONDS, 0
    while rounds == 0 or time.monotonic() < end:
        target()
        rounds += 1
    return rounds
