"""Who owns a job, and what an owner-scoped grant (`stop:own`, `delete:own`, `logs:own`) decides.

A job's owner is the `submitted_by` key of its metadata, which the proxy writes on every submission
(`submission.py`) over whatever the caller sent. A job submitted around the proxy has no owner, and
neither has a driver job (a script that called `ray.init`): its metadata is whatever the script
chose, so it is never believed. Only the unscoped verb reaches such jobs.

The owner is learnt lazily: admission hands the authorizer a `JobRef`, and Ray is asked only when a
grant depends on the answer. Everything here is pure but `JobRef.owner`, which awaits the lookup it
was given (`owners.OwnerCache` in `serve`, a fixed answer in `explain`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from urllib.parse import unquote

from ..authz.policy import Grant
from ..errors import Unavailable
from ..model import CredentialKind, Identity

OWNER_KEY = "submitted_by"
RAY_TOKEN_PRINCIPAL = "system:ray-token"
MAX_ID_SHOWN = 120  # a job id in a reason or a record is cut to this many characters

OwnerLookup = Callable[[str], Awaitable[str | None]]  # raw job id from the path -> owner, or None


class OwnerUnknown(Unavailable):
    """Ray could not tell who owns the job (unreachable, slow, or an answer we cannot read): a
    grant that depends on the owner grants nothing, and says why."""


def principal(identity: Identity) -> str:
    """The caller as recorded on what they submit: their email (a service account's too), or
    `system:ray-token` for in-cluster callers holding the cluster's Ray token (all of them alike).
    An IAP external identity's email is already namespaced (`securetoken.google.com/P:EMAIL`, never
    a Google address); one its provider did not verify is pinned to the account (`subject`), since
    another account may claim the same unverified address."""
    if identity.kind is CredentialKind.RAY_TOKEN:
        return RAY_TOKEN_PRINCIPAL
    if identity.is_external and not identity.email_verified:
        return f"unverified:{identity.email}:{identity.subject}"
    return identity.email


def job_id_of(raw: str) -> str:
    """A job id as Ray reads it from the path: percent-escapes decoded."""
    return unquote(raw)


class JobRef:
    """The job a request names, and its owner, looked up at most once per request, when asked."""

    def __init__(self, raw_id: str, lookup: OwnerLookup | None) -> None:
        self.raw_id = raw_id
        self.id = job_id_of(raw_id)
        self.shown = self.id[:MAX_ID_SHOWN]
        self._lookup = lookup
        self._known = False
        self._owner: str | None = None

    async def owner(self) -> str | None:
        """The job's owner, None when it has none. Raises OwnerUnknown when Ray could not tell."""
        if not self._known:
            if self._lookup is None:  # nothing to ask (a transport or tool without a Ray)
                raise OwnerUnknown(f"the owner of job {self.shown} cannot be looked up here")
            self._owner = await self._lookup(self.raw_id)
            self._known = True
        return self._owner


def owner_from_answer(job: str, status: int, body: bytes) -> tuple[bool, str | None]:
    """Ray's answer to `GET /api/jobs/{job}` read as (the job exists, its owner or None).
    Raises OwnerUnknown for any answer that is neither a job nor "no such job"."""
    if status == 404:
        return False, None
    if status != 200:
        raise OwnerUnknown(f"Ray answered {status} when asked who submitted job {job}")
    try:
        info = json.loads(body)
    except ValueError:
        info = None
    if not isinstance(info, dict):
        raise OwnerUnknown(f"Ray's answer about job {job} is not a job")
    metadata = info.get("metadata")
    owner = metadata.get(OWNER_KEY) if isinstance(metadata, dict) else None
    if info.get("type") != "SUBMISSION" or not isinstance(owner, str) or not owner:
        return True, None
    return True, owner


async def owned_grant(grant: Grant, caller: str, job: JobRef | None) -> Grant:
    """An owner-scoped grant resolved against the job the request names: granted only when the job's
    recorded submitter is exactly the caller (no case or Unicode folding). Raises OwnerUnknown."""
    scoped = grant.reason  # "role R via M grants stop:own"
    if job is None:
        return Grant(False, f"{scoped}: only on a job the caller submitted, and no job is named", grant.role)
    owner = await job.owner()
    if owner is None:
        return Grant(
            False,
            f"{scoped}, but job {job.shown} has no recorded submitter (it does not exist, or was not "
            "submitted through the proxy): only the unscoped verb reaches it",
            grant.role,
        )
    if owner != caller:
        return Grant(
            False, f"{scoped}, but job {job.shown} was submitted by {owner[:MAX_ID_SHOWN]}", grant.role
        )
    return Grant(True, f"{scoped}: job {job.shown} was submitted by {caller}", grant.role)
