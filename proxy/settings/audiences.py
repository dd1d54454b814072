"""What an IAP audience looks like, and which values are placeholders.

IAP signs `aud` as the resource it protects (gke-iap-kuberay.md §1.3): a global backend service for GKE
Ingress and Gateway, a regional backend service behind a regional or internal load balancer, or an
App Engine app. Anything else can never match a real assertion, so it is refused at load; a value of the
right shape whose numbers are a placeholder (the overlays ship those, since the backend service exists
only after the first apply) is accepted and warned about loudly, because every request then fails closed.
"""

from __future__ import annotations

import re

HOW_TO_FIND = (
    "find it with `gcloud compute backend-services describe NAME --global --format='value(id)'` "
    "(docs/deploy-gke.md, step 6)"
)
FORMS = (
    re.compile(r"^/projects/(?P<project>\d+)/global/backendServices/(?P<service>\d+)$"),
    re.compile(r"^/projects/(?P<project>\d+)/regions/[a-z][-a-z0-9]*/backendServices/(?P<service>\d+)$"),
    re.compile(r"^/projects/(?P<project>\d+)/apps/(?P<app>[a-z][-a-z0-9]{4,28}[a-z0-9])$"),
)
SHAPES = (
    "/projects/PROJECT_NUMBER/global/backendServices/SERVICE_ID (GKE Ingress or Gateway), "
    "/projects/PROJECT_NUMBER/regions/REGION/backendServices/SERVICE_ID (regional load balancer) or "
    "/projects/PROJECT_NUMBER/apps/PROJECT_ID (App Engine)"
)
DEV_PROJECT_NUMBER = "000000000000"  # proxy/dev.py's DEV_AUDIENCE: dev-iap and dev-token only
_PLACEHOLDER_APPS = {"project-id", "my-project", "example", "my-project-id", "your-project"}


def shape_problem(audience: str) -> str | None:
    """Why `audience` can never be an IAP `aud`, or None when it has one of IAP's shapes."""
    if any(form.match(audience) for form in FORMS):
        return None
    hint = ""
    if audience.isdigit():
        hint = ": the backend service's id alone is not the audience"
    elif audience.endswith(".apps.googleusercontent.com"):
        hint = ": an OAuth client id is the audience of Google ID tokens (google_id_tokens), not of IAP's"
    elif audience.startswith(("http://", "https://")):
        hint = ": a URL is the audience of Google ID tokens (google_id_tokens), not of IAP's assertion"
    return f"is not an IAP audience{hint}; expected {SHAPES}; {HOW_TO_FIND}"


def _made_up(number: str) -> str | None:
    if len(set(number)) == 1:
        return f"{number} repeats one digit"
    if len(number) < 6:
        return f"{number} is too short for a real one"
    ascending = "1234567890" * 3
    if number in ascending:
        return f"{number} counts up"
    return None


def placeholder_reason(audience: str) -> str | None:
    """Why an audience of the right shape looks made up (a placeholder or the dev audience), or None."""
    for form in FORMS:
        match = form.match(audience)
        if match is None:
            continue
        parts = match.groupdict()
        if parts.get("project") == DEV_PROJECT_NUMBER:
            return "is the dev audience of dev-iap and dev-token, which Google never signs"
        if parts.get("app") in _PLACEHOLDER_APPS:
            return f"names the App Engine app {parts['app']!r}, a placeholder"
        for what in ("project", "service"):
            if parts.get(what) and (why := _made_up(parts[what])):
                return f"looks like a placeholder ({why})"
    return None
