"""A loopback stand-in for the GCE metadata server (what every GKE node serves its Pods), speaking its
wire format: `GET /computeMetadata/v1/...` with `Metadata-Flavor: Google` required (403 without, as
the real one), text answers with `Metadata-Flavor: Google`, 404 for what it does not hold.

Point code at it as google-auth and the proxy find it: `GCE_METADATA_HOST=127.0.0.1:PORT`.

    async with MetadataServer(project_id="my-project") as md:
        env = {"GCE_METADATA_HOST": md.host}

`values` maps paths under /computeMetadata/v1/ to answers (str: text; dict/list: JSON), so a test can
add what it needs (a service account's token, its email). `requests` records every path asked.
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

PREFIX = "/computeMetadata/v1/"


class MetadataServer:
    def __init__(self, project_id: str = "test-project", numeric_project_id: str = "123456789012") -> None:
        self.values: dict[str, Any] = {
            "project/project-id": project_id,
            "project/numeric-project-id": numeric_project_id,
            "instance/service-accounts/default/email": f"proxy@{project_id}.iam.gserviceaccount.com",
        }
        self.requests: list[str] = []
        self.asked: list[str] = []  # path and query, e.g. the scopes of a token request
        self.fail = False  # True: every answer is a 500
        self._server: TestServer | None = None

    async def _answer(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        self.asked.append(request.path_qs)
        flavor = {"Metadata-Flavor": "Google"}
        if request.headers.get("Metadata-Flavor") != "Google":
            return web.Response(status=403, text="Missing Metadata-Flavor:Google header.", headers=flavor)
        if self.fail:
            return web.Response(status=500, text="internal error", headers=flavor)
        key = request.path.removeprefix(PREFIX)
        if not request.path.startswith(PREFIX) or key not in self.values:
            return web.Response(status=404, text="not found", headers=flavor)
        value = self.values[key]
        if isinstance(value, str):
            return web.Response(text=value, content_type="application/text", headers=flavor)
        return web.Response(text=json.dumps(value), content_type="application/json", headers=flavor)

    def serve_token(self, token: str, email: str = "", expires_in: int = 3599) -> None:
        """Answer for the pod's Workload Identity as google-auth asks: the account's info (recursive)
        and an access token."""
        email = email or self.values["instance/service-accounts/default/email"]
        self.values["instance/service-accounts/default/email"] = email
        self.values["instance/service-accounts/default/"] = {
            "aliases": ["default"],
            "email": email,
            "scopes": ["https://www.googleapis.com/auth/cloud-platform"],
        }
        self.values["instance/service-accounts/default/token"] = {
            "access_token": token,
            "expires_in": expires_in,
            "token_type": "Bearer",
        }

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._answer)
        return app

    async def start(self) -> None:
        self._server = TestServer(self.app(), host="127.0.0.1")
        await self._server.start_server()

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`, the value for `GCE_METADATA_HOST`."""
        assert self._server is not None and self._server.port is not None, "not started"
        return f"127.0.0.1:{self._server.port}"

    async def __aenter__(self) -> MetadataServer:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
