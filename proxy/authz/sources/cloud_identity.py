"""Google Groups membership through the Cloud Identity Groups API, with the pod's Workload Identity.

    GET {api_root}/v1/groups:lookup?groupKey.id=GROUP_EMAIL            -> {"name": "groups/ID"}
    GET {api_root}/v1/groups/ID/memberships:checkTransitiveMembership
        ?query=member_key_id == 'EMAIL'                                -> {"hasMembership": true}

The access token comes from google-auth's Compute Engine credentials: on GKE, the metadata server
answers for the pod's Workload Identity (`GCE_METADATA_HOST` moves it, as google-auth reads it). The
token refresh is blocking I/O, so it runs on a worker thread of its own; the API calls are aiohttp.
Answers (member or not, and group names) are cached for `ttl_seconds`; failures are not cached, and a
failure means "not known": it never makes anyone a member.

Exposed for metrics: `calls` (API requests made), `token_refreshes`, `health.failures`,
`health.last_error`, and the caches' `hits`, `misses`, `coalesced`, `size`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ...settings.sources import GoogleGroups
from .cache import Clock, Health, Lookups

log = logging.getLogger("ray_iap_proxy.authz")
SCOPE = "https://www.googleapis.com/auth/cloud-identity.groups.readonly"
MAX_BODY = 64 * 1024
MAX_CONCURRENT_CALLS = 8
_UNQUOTABLE = set("'\"\\ \t\r\n")


class GroupsError(Exception):
    """Cloud Identity could not tell; `reason` is safe to show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Resolution:
    """Which of the groups asked about the member is in, and which could not be checked (and why)."""

    member_of: frozenset[str] = frozenset()
    unresolved: dict[str, str] = field(default_factory=dict)

    def why_unresolved(self) -> str:
        reasons = sorted(set(self.unresolved.values()))
        groups = ", ".join(f"group:{g}" for g in sorted(self.unresolved))
        return f"{groups} could not be checked ({'; '.join(reasons)})"


@dataclass(frozen=True, slots=True)
class _Found:
    value: str  # a group's resource name ("" when no such group), or "yes"/"no" for a membership


def default_credentials() -> Any:
    """Workload Identity (the metadata server), as google-auth finds it on GKE."""
    from google.auth import compute_engine

    return compute_engine.Credentials(scopes=[SCOPE])  # type: ignore[no-untyped-call]


class CloudIdentity:
    def __init__(
        self, settings: GoogleGroups, credentials: Any = None, clock: Clock = time.monotonic
    ) -> None:
        self.root = settings.api_root.rstrip("/")
        self.timeout = settings.request_timeout_seconds
        self.credentials = credentials if credentials is not None else default_credentials()
        ttl = float(settings.ttl_seconds)
        self.names: Lookups[str, _Found] = Lookups(settings.cache_size, lambda _: ttl, clock)
        self.members: Lookups[tuple[str, str], _Found] = Lookups(settings.cache_size, lambda _: ttl, clock)
        self.health = Health("google_groups (Cloud Identity)", clock)
        self.calls = 0
        self.token_refreshes = 0
        self._session: aiohttp.ClientSession | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="google-auth")
        self._token_lock = asyncio.Lock()
        self._refreshing = False  # a token refresh is running (google-auth retries the metadata server)
        self._limit = asyncio.Semaphore(MAX_CONCURRENT_CALLS)

    async def resolve(self, email: str, groups: Iterable[str]) -> Resolution:
        """Is `email` a (transitive) member of each of `groups`? Bounded by `request_timeout_seconds`
        as a whole; what is not known by then is unresolved."""
        wanted = sorted(set(groups))
        if not wanted:
            return Resolution()
        if _UNQUOTABLE & set(email):  # never spliced into the query: it could change its meaning
            return Resolution(unresolved={g: "the email cannot be queried" for g in wanted})
        tasks = {g: asyncio.ensure_future(self.is_member(g, email)) for g in wanted}
        try:
            await asyncio.wait(tasks.values(), timeout=self.timeout)
        finally:
            for task in tasks.values():
                task.cancel()  # only our wait for it: the lookup itself goes on and is cached
            await asyncio.gather(*tasks.values(), return_exceptions=True)
        member_of, unresolved = set(), {}
        late = (
            f"no Workload Identity token from the metadata server within {self.timeout:g} s"
            if self._refreshing
            else f"Cloud Identity did not answer within {self.timeout:g} s"
        )
        for group, task in tasks.items():
            if task.cancelled():
                unresolved[group] = late
            elif isinstance(exc := task.exception(), GroupsError):
                unresolved[group] = exc.reason
            elif exc is not None:
                unresolved[group] = f"Cloud Identity lookup failed ({type(exc).__name__})"
            elif task.result():
                member_of.add(group)
        if any(why == late for why in unresolved.values()):
            self.health.failed(late)
        return Resolution(frozenset(member_of), unresolved)

    async def is_member(self, group: str, email: str) -> bool:
        name = await self.names.get(group, lambda: self._lookup(group))
        if not name.value:
            return False  # no such group: nobody is in it
        found = await self.members.get((group, email), lambda: self._check(name.value, email))
        return found.value == "yes"

    async def _lookup(self, group: str) -> _Found:
        body = await self._call("/v1/groups:lookup", {"groupKey.id": group})
        if body is None:
            return _Found("")
        name = body.get("name")
        if not isinstance(name, str) or not name.startswith("groups/") or "/" in name[7:]:
            raise GroupsError("Cloud Identity answered groups:lookup without a group name")
        return _Found(name)

    async def _check(self, name: str, email: str) -> _Found:
        query = f"member_key_id == '{email}'"
        body = await self._call(f"/v1/{name}/memberships:checkTransitiveMembership", {"query": query})
        has = (body or {}).get("hasMembership", False)
        if not isinstance(has, bool):
            raise GroupsError("Cloud Identity answered checkTransitiveMembership without hasMembership")
        return _Found("yes" if has else "no")

    async def _call(self, path: str, params: dict[str, str]) -> dict[str, Any] | None:
        """One GET; the JSON object, or None for 404. Anything else raises GroupsError."""
        token = await self._token()
        session = self._session_()
        async with self._limit:
            self.calls += 1
            try:
                async with session.get(
                    self.root + path,
                    params=params,
                    headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                    timeout=aiohttp.ClientTimeout(total=self.timeout),
                    allow_redirects=False,
                ) as r:
                    status, body = r.status, await r.content.read(MAX_BODY)
            except TimeoutError:
                raise self._failed(f"Cloud Identity did not answer within {self.timeout:g} s") from None
            except aiohttp.ClientError as exc:
                raise self._failed(f"Cloud Identity is unreachable ({type(exc).__name__})") from None
        if status == 404:
            self.health.ok()
            return None
        if status != 200:
            raise self._failed(_status_reason(status, self.credentials), _message(body))
        try:
            parsed = json.loads(body)
        except ValueError:
            raise self._failed("Cloud Identity answered with something other than JSON") from None
        if not isinstance(parsed, dict):
            raise self._failed("Cloud Identity answered with something other than a JSON object")
        self.health.ok()
        return parsed

    def _failed(self, reason: str, detail: str = "") -> GroupsError:
        self.health.failed(f"{reason} [{detail}]" if detail else reason)
        return GroupsError(reason)

    async def _token(self) -> str:
        creds = self.credentials
        if creds.valid and creds.token:
            return str(creds.token)
        async with self._token_lock:
            if not (creds.valid and creds.token):
                self.token_refreshes += 1
                self._refreshing = True
                try:
                    await asyncio.get_running_loop().run_in_executor(self._pool, _refresh, creds)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.debug("token refresh failed", exc_info=True)
                    raise self._failed(
                        f"no Workload Identity token from the metadata server ({type(exc).__name__})"
                    ) from None
                finally:
                    self._refreshing = False
        return str(creds.token)

    def _session_(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        return self._session

    async def close(self) -> None:
        await self.names.close()
        await self.members.close()
        if self._session is not None:
            await self._session.close()
        self._pool.shutdown(wait=False, cancel_futures=True)


def _refresh(creds: Any) -> None:
    from google.auth.transport.requests import Request

    creds.refresh(Request())


def _message(body: bytes) -> str:
    """Google's own words from an error answer, for the log."""
    try:
        return str(json.loads(body)["error"]["message"])[:200]
    except (ValueError, KeyError, TypeError):
        return ""


def _status_reason(status: int, creds: Any) -> str:
    if status == 401:
        creds.token = None  # refused: fetch a new one next time
        return "Cloud Identity refused the service account's token (401)"
    if status == 403:
        return (
            "Cloud Identity refused (403 PERMISSION_DENIED): transitive membership needs Cloud Identity "
            "Premium or Workspace Enterprise, and the service account must be allowed to view the group"
        )
    if status == 429:
        return "Cloud Identity is rate-limiting the proxy (429)"
    return f"Cloud Identity answered {status}"
