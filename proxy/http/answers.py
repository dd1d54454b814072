"""What the proxy itself says: refusals and local answers. JSON for programs, a small readable page
for browsers. Nothing here ever echoes a token, a cookie or a stack trace.
"""

from __future__ import annotations

import html
import json

from aiohttp import web

from ..model import RequestContext
from .status import ERRORS, TITLES

# The page may only style itself: it loads nothing, runs nothing and is never framed.
PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'none'"


def wants_html(request: web.BaseRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and not request.headers.get("X-Requested-With")


def refusal(
    request: web.BaseRequest, ctx: RequestContext, status: int, reason: str, hint: str | None = None
) -> web.Response:
    """The one shape of every refusal: status, {error, reason, request_id}, or the HTML page.
    `hint` replaces the page's default advice for the status."""
    headers = {"X-Request-Id": ctx.request_id, "Cache-Control": "no-store"}
    if status == 401:
        headers["WWW-Authenticate"] = 'IAP realm="ray-iap-proxy"'
    if wants_html(request):
        headers["Content-Security-Policy"] = PAGE_POLICY
        headers["X-Content-Type-Options"] = "nosniff"
        return web.Response(
            status=status,
            text=_page(ctx, status, reason, hint),
            content_type="text/html",
            charset="utf-8",
            headers=headers,
        )
    body = {"error": ERRORS.get(status, "error"), "reason": reason, "request_id": ctx.request_id}
    return web.json_response(body, status=status, headers=headers)


def _page(ctx: RequestContext, status: int, reason: str, hint: str | None) -> str:
    e = html.escape
    who = e(ctx.identity.email) if ctx.identity else "not signed in"
    rows = [("Signed in as", who), ("Cluster tenant", e(ctx.tenant or "-"))]
    if ctx.verb is not None:
        rows.append(("Permission needed", e(str(ctx.verb))))
    rows += [
        ("Request", e(f"{ctx.method} {ctx.target.split('?', 1)[0]}"[:200])),
        ("Reason", e(reason)),
        ("Request id", f"<code>{e(ctx.request_id)}</code>"),
    ]
    table = "\n".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    title = e(TITLES.get(status, "Refused"))
    hint = hint or _default_hint(ctx, status)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{status} {title} · Ray</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font:15px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#222}}
h1{{font-size:1.4rem}} td,th{{padding:.25rem 0;vertical-align:top}} code{{background:#f3f3f3;padding:0 .3rem}}
th{{text-align:left;padding-right:1.5rem;color:#555;font-weight:500;white-space:nowrap}}
.s{{color:#b00}}</style></head>
<body><h1><span class="s">{status}</span> {title}</h1>
<p>The Ray cluster's access proxy refused this request.</p>
<table>{table}</table>
<p>{e(hint)}</p></body></html>
"""


def _default_hint(ctx: RequestContext, status: int) -> str:
    if status == 401:
        return "Reload the page to sign in again."
    if status == 403 and ctx.verb is not None:
        return "Ask your platform team for a role that grants the permission above, quoting the request id."
    if status == 403:
        return "The proxy does not expose this address to anyone; quote the request id if you need it."
    return "Quote the request id to your platform team if this persists."


def json_answer(ctx: RequestContext, body: object, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/json",
        headers={"X-Request-Id": ctx.request_id, "Cache-Control": "no-store"},
    )
