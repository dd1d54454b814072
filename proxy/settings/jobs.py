"""Settings of job ownership and of the secrets jobs are given (proxy/jobs/, docs/policy.md)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator

from .base import Float, Int, Section, invalid, setting

KIB = 1024
MIB = 1024 * KIB


def _role_name(value: object) -> object:
    if not isinstance(value, str) or not value.strip():
        raise invalid("must be a role name")
    return value


class Jobs(Section):
    """Who submitted each job, owner-scoped verbs, and job secrets."""

    max_submission_bytes: Int = setting(
        1 * MIB,
        "a job submission (`POST /api/jobs/`, JSON) larger than this gets 413: the proxy reads it whole to "
        "record the submitter. Ray's HTTP limit is 100 MiB, but Ray hands the runtime env and metadata to "
        "the job's driver in one environment variable, which Linux caps at 128 KiB.",
        low=4 * KIB,
        high=100 * MIB,
        shown="1 MiB",
    )
    owner_cache_seconds: Float = setting(
        10.0,
        "how long a job's submitter, asked of Ray for `stop:own`, `delete:own` and `logs:own`, is reused. "
        "A job's submitter never changes; the entry is dropped when the job is deleted or its id is "
        "submitted again through the proxy. 0: ask Ray every time.",
        low=0,
        high=3600,
    )
    owner_cache_size: Int = setting(
        4096, "job submitters kept (least recently used dropped first).", low=1, high=1_000_000
    )
    owner_lookup_timeout_seconds: Float = setting(
        3.0,
        "asking Ray who submitted a job; slower (or unreachable) grants nothing with a reason (503).",
        low=0.1,
        high=60,
    )
    reveal_secrets_to_roles: tuple[Annotated[str, BeforeValidator(_role_name)], ...] = setting(
        (),
        "roles of the policy file whose members read jobs' `runtime_env.env_vars` values back (from the "
        "job and state APIs, and Ray's runtime-env logs). Empty (the default): nobody does; the values "
        "are shown as `<redacted>`, and jobs still receive them.",
    )
