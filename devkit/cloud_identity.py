"""A loopback stand-in for the Cloud Identity Groups API (v1), the two calls the proxy makes:

    GET /v1/groups:lookup?groupKey.id=EMAIL                      -> {"name": "groups/ID"}
    GET /v1/groups/ID/memberships:checkTransitiveMembership?query=member_key_id == 'EMAIL'
                                                                 -> {"hasMembership": bool}

`groups` maps a group's email to its direct members (people or other groups: membership is
transitive). Every call needs `Authorization: Bearer T` with T in `tokens` (401 otherwise), e.g. the
token the metadata stand-in hands out. Errors are Google's JSON error shape. Without `premium`,
checkTransitiveMembership answers 403 PERMISSION_DENIED, as it does for accounts without Cloud
Identity Premium or Workspace Enterprise. Switches: `fail_status`, `delay_seconds`, `stop()`/`start()`.
`calls` records every path asked, with its query.
"""

from __future__ import annotations

import asyncio
import hashlib
import re

from aiohttp import web

from devkit.ports import free_port

QUERY_RE = re.compile(r"^member_key_id\s*==\s*'([^'\\]+)'$")


def _error(code: int, status: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, "status": status}}, status=code)


class CloudIdentityApi:
    def __init__(self, groups: dict[str, set[str]], tokens: set[str]) -> None:
        self.groups = groups
        self.tokens = tokens
        self.premium = True
        self.fail_status: int | None = None
        self.delay_seconds = 0.0
        self.calls: list[str] = []
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @staticmethod
    def group_id(email: str) -> str:
        return "0" + hashlib.sha256(email.encode()).hexdigest()[:14]

    def _by_id(self, gid: str) -> str | None:
        return next((g for g in self.groups if self.group_id(g) == gid), None)

    def member(self, group: str, who: str, seen: frozenset[str] = frozenset()) -> bool:
        direct = self.groups.get(group, set())
        if who in direct:
            return True
        return any(self.member(g, who, seen | {group}) for g in direct if g in self.groups and g not in seen)

    async def _gate(self, request: web.Request) -> web.Response | None:
        self.calls.append(request.path_qs)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self.tokens:
            return _error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.")
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        if self.fail_status is not None:
            return _error(self.fail_status, "UNAVAILABLE", "The service is currently unavailable.")
        return None

    async def _lookup(self, request: web.Request) -> web.Response:
        if (refused := await self._gate(request)) is not None:
            return refused
        key = request.query.get("groupKey.id", "")
        if key not in self.groups:
            return _error(404, "NOT_FOUND", f"Error(2015): Group {key} not found.")
        return web.json_response({"name": f"groups/{self.group_id(key)}"})

    async def _check(self, request: web.Request) -> web.Response:
        if (refused := await self._gate(request)) is not None:
            return refused
        group = self._by_id(request.match_info["gid"])
        if group is None:
            return _error(404, "NOT_FOUND", "Error(2015): Group not found.")
        if not self.premium:
            return _error(
                403,
                "PERMISSION_DENIED",
                "Error(4003): Transitive membership APIs are only available to Cloud Identity Premium "
                "and Google Workspace Enterprise customers.",
            )
        found = QUERY_RE.match(request.query.get("query", ""))
        if found is None:
            return _error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.")
        return web.json_response({"hasMembership": self.member(group, found.group(1))})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/groups:lookup", self._lookup)
        app.router.add_get("/v1/groups/{gid}/memberships:checkTransitiveMembership", self._check)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        """An outage: nothing listens on the port until `start()`."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    close = stop
