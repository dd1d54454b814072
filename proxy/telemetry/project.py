"""The Google Cloud project that trace links name (`projects/PROJECT/traces/ID`): from the config, or
asked once at start-up from the GCE metadata server, which every GKE node serves to its Pods.

`auto` asks only where a metadata server can be: on Kubernetes (`KUBERNETES_SERVICE_HOST`) or where
`GCE_METADATA_HOST` names one (google-auth's variable; tests point it at a loopback stand-in). It never
delays start-up by more than the timeout, and a failure only costs the trace links.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

import aiohttp

log = logging.getLogger("ray_iap_proxy.telemetry")

METADATA_HOST = "metadata.google.internal"
PROJECT_PATH = "/computeMetadata/v1/project/project-id"
TIMEOUT_SECONDS = 2.0
_PROJECT_ID = re.compile(r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$|^[a-z0-9.:-]{1,100}$")


async def resolve_project(configured: str, environ: Mapping[str, str]) -> str:
    """The project id to use: the configured one, or `auto`'s answer, or "" (no trace links)."""
    if configured != "auto":
        return configured
    host = environ.get("GCE_METADATA_HOST", "")
    if not host and not environ.get("KUBERNETES_SERVICE_HOST"):
        return ""
    url = f"http://{host or METADATA_HOST}{PROJECT_PATH}"
    try:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
        async with (
            aiohttp.ClientSession(timeout=timeout, trust_env=False) as session,
            session.get(url, headers={"Metadata-Flavor": "Google"}, allow_redirects=False) as r,
        ):
            body = (await r.content.read(200)).decode("ascii", "replace").strip()
            if r.status != 200 or r.headers.get("Metadata-Flavor") != "Google":
                raise ValueError(f"answered {r.status}")
    except (aiohttp.ClientError, TimeoutError, ValueError, UnicodeError) as exc:
        log.warning("access_log.project_id auto: the metadata server at %s did not say (%s)", url, exc)
        return ""
    if not _PROJECT_ID.match(body):
        log.warning("access_log.project_id auto: the metadata server said %r, not a project id", body[:60])
        return ""
    return body
