"""The Ray 2.60 dashboard surface as data: every route the head registers, each mapped to one verb.

Rows are matched exactly and case-sensitively (see `table.py`); HEAD is classified as GET; anything
not here is refused. When Ray adds a route, this table and a test change together.

`side_effects=True` marks Ray's GET* routes (ray-surface.md): GETs that change state — pin a package
in GCS, attach a profiler to a process, write trace files, create a detached actor, connect the
dashboard as a driver. A browser sends GETs from any page (a link, an `<img>`), so these are held to
the cross-site rule of writes (`csrf.py`); the other GETs, a navigation to `/` among them, are not.
"""

from __future__ import annotations

from ...model import Action, Route, Verb

RAY_VERSION = "2.60.0"

V, L, S, D = Verb.VIEW, Verb.LOGS, Verb.SUBMIT, Verb.DEBUG
JOB = "job_or_submission_id"  # the parameter naming a job, for `stop:own` and the like

# (method, pattern, verb, action, websocket, note, side_effects). `{x}` is one non-empty segment;
# `{x:.+}` the rest.
RAY_ROUTES: tuple[Route, ...] = (
    Route("GET", "/", V, note="dashboard SPA index"),
    Route("GET", "/favicon.ico", V),
    Route("GET", "/static/{filename:.+}", V, note="UI assets"),
    Route("GET", "/timezone", V),
    Route(
        "GET",
        "/api/authentication_mode",
        V,
        Action.LOCAL,
        note="answered by the proxy: clients never need Ray's token",
    ),
    Route(
        "POST",
        "/api/authenticate",
        V,
        Action.LOCAL,
        note="answered by the proxy: sign-in is IAP's; Ray's cookie is never issued",
    ),
    Route("GET", "/usage_stats_enabled", V),
    Route("GET", "/cluster_id", V),
    Route("GET", "/api/version", V, note="every `ray job` command calls it first"),
    Route(
        "GET",
        "/api/packages/{protocol}/{package_name}",
        S,
        note="GET* pins the package in GCS",
        side_effects=True,
    ),
    Route("PUT", "/api/packages/{protocol}/{package_name}", S, note="working_dir upload, up to 100 MiB"),
    Route("POST", "/api/jobs/", S, note="runs an arbitrary command on the cluster"),
    Route("POST", "/api/jobs/{job_or_submission_id}/stop", Verb.STOP, job_param=JOB),
    Route("DELETE", "/api/jobs/{job_or_submission_id}", Verb.DELETE, job_param=JOB),
    Route("GET", "/api/jobs/{job_or_submission_id}", V, job_param=JOB),
    Route("GET", "/api/jobs/", V),
    Route("GET", "/api/jobs/{job_or_submission_id}/logs", L, job_param=JOB),
    Route("GET", "/api/jobs/{job_or_submission_id}/logs/tail", L, websocket=True, job_param=JOB),
    Route("GET", "/api/component_activities", V),
    Route("GET", "/nodes", V),
    Route("GET", "/nodes/{node_id}", V, note="includes worker command lines"),
    Route("GET", "/logical/actors", V),
    Route("GET", "/logical/actors/{actor_id}", V),
    Route("GET", "/test/dump", None, Action.DENY, note="testing only: dumps the whole data source"),
    Route("GET", "/api/profiling_enabled", V),
    Route("GET", "/api/v0/cluster_metadata", V),
    Route("GET", "/api/cluster_status", V),
    Route("GET", "/task/traceback", D, note="py-spy attaches to the task's worker", side_effects=True),
    Route("GET", "/task/cpu_profile", D, note="py-spy records for up to 60 s", side_effects=True),
    Route(
        "GET", "/worker/traceback", D, note="py-spy dump of any PID the agent can ptrace", side_effects=True
    ),
    Route("GET", "/worker/cpu_profile", D, side_effects=True),
    Route("GET", "/worker/gpu_profile", D, note="GET* writes a trace file on the node", side_effects=True),
    Route("GET", "/worker/jax_profile", D, note="GET* starts the JAX profiler", side_effects=True),
    Route("GET", "/memory_profile", D, note="memray attaches to the process", side_effects=True),
    Route("GET", "/api/gcs_healthz", V),
    Route("GET", "/api/prometheus/sd", V),
    Route("GET", "/api/grafana_health", V),
    Route("GET", "/api/prometheus_health", V),
    Route("GET", "/api/ray/version", V),
    Route("GET", "/api/serve/applications/", V),
    Route("PUT", "/api/serve/applications/", Verb.SERVE, note="declarative deploy: runs user code"),
    Route("DELETE", "/api/serve/applications/", Verb.SERVE, note="serve shutdown: deletes all apps"),
    Route("POST", "/api/v1/applications/{application_name}/deployments/{deployment_name}/scale", Verb.SERVE),
    Route("POST", "/report_events", None, Action.DENY, note="internal: agents push events"),
    Route("GET", "/events", V),
    Route("GET", "/api/v0/cluster_events", V),
    Route("GET", "/api/v0/actors", V),
    Route("GET", "/api/v0/jobs", V),
    Route("GET", "/api/v0/nodes", V),
    Route("GET", "/api/v0/placement_groups", V),
    Route("GET", "/api/v0/workers", V),
    Route("GET", "/api/v0/tasks", V),
    Route("GET", "/api/v0/objects", V),
    Route("GET", "/api/v0/runtime_envs", V),
    Route("GET", "/api/v0/runtime_env_redaction", V),
    Route("GET", "/api/v0/logs", L),
    Route("GET", "/api/v0/logs/file", L),
    Route("GET", "/api/v0/logs/stream", L, note="follows a file as it grows"),
    Route("GET", "/api/v0/tasks/summarize", V),
    Route("GET", "/api/v0/actors/summarize", V),
    Route("GET", "/api/v0/objects/summarize", V),
    Route("GET", "/api/v0/tasks/timeline", V),
    Route("GET", "/api/v0/delay/{delay_s}", None, Action.DENY, note="testing only: sleeps (DoS helper)"),
    Route("GET", "/api/train/v2/runs", V, note="connects the dashboard as a driver", side_effects=True),
    Route("GET", "/api/train/v2/runs/v1", V, note="connects the dashboard as a driver", side_effects=True),
    Route(
        "GET",
        "/api/data/datasets/{job_id}",
        V,
        note="GET* may create the detached stats actor",
        side_effects=True,
    ),
    # Loaded only behind feature flags in 2.60:
    Route("POST", "/api/task_events", None, Action.DENY, note="internal, conditional"),
    Route("POST", "/api/task_events/query", None, Action.DENY, note="internal, conditional"),
    Route("GET", "/api/v0/platform_events", V, note="conditional"),
)
