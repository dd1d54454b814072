"""Ray's job API, as far as job ownership needs it, installed on a `RayDouble` as overrides: jobs
submitted through it are kept (their metadata and runtime env, secrets included, as Ray keeps them),
and read back as Ray 2.60 does: `runtime_env.env_vars` values masked only for browser-looking
requests (`Sec-Fetch-*`, `Origin`, `Referer`, a `Mozilla` User-Agent), like
ray/dashboard/runtime_env_redaction.py. Stop and delete are recorded; a job added with `add(...)`
has whatever metadata the test gives it (a job submitted around the proxy has no `submitted_by`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from devkit.ray_double import RayDouble

_BROWSER = ("Referer", "Origin", "Sec-Fetch-Mode", "Sec-Fetch-Dest", "Sec-Fetch-Site", "Sec-Fetch-User")


def looks_like_a_browser(request: web.Request) -> bool:
    return request.headers.get("User-Agent", "").startswith("Mozilla") or any(
        h in request.headers for h in _BROWSER
    )


@dataclass
class RayJobs:
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    submitted: list[bytes] = field(default_factory=list)  # bodies as Ray received them
    stopped: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    redacting: bool = True  # what /api/v0/runtime_env_redaction says

    def install(self, double: RayDouble) -> RayJobs:
        double.overrides.update(
            {
                "/api/jobs/": self._jobs,
                "/api/jobs/{job_or_submission_id}": self._job,
                "/api/jobs/{job_or_submission_id}/stop": self._stop,
                "/api/v0/runtime_env_redaction": self._redaction,
            }
        )
        return self

    def add(self, submission_id: str, metadata: dict[str, str], env: dict[str, str] | None = None) -> None:
        self.jobs[submission_id] = {
            "type": "SUBMISSION",
            "job_id": None,
            "submission_id": submission_id,
            "status": "RUNNING",
            "entrypoint": "python job.py",
            "metadata": metadata,
            "runtime_env": {"env_vars": env or {}},
        }

    def shown(self, job: dict[str, Any], request: web.Request) -> dict[str, Any]:
        if not looks_like_a_browser(request):
            return job
        env = {k: "<redacted>" for k in job["runtime_env"].get("env_vars", {})}
        return {**job, "runtime_env": {**job["runtime_env"], "env_vars": env}}

    async def _jobs(self, request: web.Request) -> web.StreamResponse:
        if request.method == "POST":
            body = await request.read()
            self.submitted.append(body)
            doc = json.loads(body)
            sid = doc.get("submission_id") or doc.get("job_id") or f"raysubmit_{len(self.jobs)}"
            if sid in self.jobs:
                return web.Response(status=400, text=f"Job with submission_id {sid} already exists.")
            self.add(sid, doc.get("metadata") or {}, (doc.get("runtime_env") or {}).get("env_vars"))
            return web.json_response({"job_id": sid, "submission_id": sid})
        return web.json_response([self.shown(j, request) for j in self.jobs.values()])

    async def _job(self, request: web.Request) -> web.StreamResponse:
        job_id = request.match_info["job_or_submission_id"]
        job = self.jobs.get(job_id)
        if job is None:
            return web.Response(status=404, text=f"Job {job_id} does not exist")
        if request.method == "DELETE":
            self.deleted.append(job_id)
            del self.jobs[job_id]
            return web.json_response({"deleted": True})
        return web.json_response(self.shown(job, request))

    async def _stop(self, request: web.Request) -> web.StreamResponse:
        job_id = request.match_info["job_or_submission_id"]
        if job_id not in self.jobs:
            return web.Response(status=404, text=f"Job {job_id} does not exist")
        self.stopped.append(job_id)
        return web.json_response({"stopped": True})

    async def _redaction(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"result": True, "msg": "", "data": {"redactionEnabled": self.redacting}})
