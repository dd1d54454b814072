"""The access record, version 1: THE definition of every field, its type and its meaning.

One JSON line per HTTP request, per WebSocket session (written when it closes) and per gRPC call, in
the structured form Cloud Logging parses on GKE: `severity`, `time`, `message`, `httpRequest` and the
`logging.googleapis.com/*` keys are lifted into the log entry; everything else stays in `jsonPayload`.

`line.py` writes the lines straight from the context (cheap, on the hot path); tests validate what
it writes against `AccessRecord` (strict, no unknown keys), and the field table in
docs/security-teams.md is rendered from it (`make docs`, i.e. `python -m proxy.telemetry.reference
--write docs/security-teams.md`; a test fails when the page drifts).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA = "ray-iap-proxy/access/1"
TRACE_KEY = "logging.googleapis.com/trace"
SPAN_KEY = "logging.googleapis.com/spanId"
SAMPLED_KEY = "logging.googleapis.com/trace_sampled"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)


def doc(text: str, **kw: Any) -> Any:
    return Field(description=text, **kw)


class HttpRequest(_Strict):
    """Cloud Logging's `HttpRequest` (google/logging/type/http_request.proto); sizes are int64 strings."""

    requestMethod: str = doc("HTTP method; `POST` for a gRPC call.")
    requestUrl: str = doc("the path, without the query (the query is `query`); the full method for gRPC.")
    status: int = doc("the status the client got: 101 for a WebSocket, 200 for any gRPC call.")
    requestSize: str = doc("bytes of request body (WebSocket, gRPC: message bytes client to Ray).")
    responseSize: str = doc("bytes of response body (WebSocket, gRPC: message bytes Ray to client).")
    latency: str = doc('from the first byte read to the record, e.g. `"0.012s"`; a session\'s duration.')
    remoteIp: str = doc("the client: `peer`, or from `X-Forwarded-For` when `peer` is a trusted proxy.")
    userAgent: str = doc("`User-Agent`, at most 200 characters.")
    protocol: str = doc("`HTTP/1.1`, or `HTTP/2` for gRPC.")


class Grpc(_Strict):
    method: str = doc("the full method, `/ray.rpc.RayletDriver/Datapath`.")
    code: str = doc("the gRPC status code's name the client got: `OK`, `PERMISSION_DENIED`, ...")
    client_id: str | None = doc("Ray Client's session id (`client_id` metadata), when it sent one.")
    messages_in: int = doc("messages from the client.")
    messages_out: int = doc("messages to the client.")


class AccessRecord(_Strict):
    """One access record. Absent facts are `null`, never a guess."""

    schema_: Literal["ray-iap-proxy/access/1"] = doc("this definition's name and version.", alias="schema")
    time: str = doc("RFC 3339, UTC, milliseconds: when the request ended. Cloud Logging's timestamp.")
    ts: float = doc("the same instant as `time`, seconds since the epoch.")
    severity: Literal["INFO", "WARNING", "ERROR"] = doc(
        "WARNING for a denial (`decision` deny), ERROR for the proxy's or Ray's failure (`error`, or "
        "a status of 500 or more), INFO otherwise."
    )
    message: str = doc("one line for people: `GET /api/jobs/ 403 deny alice@example.com`.")
    kind: Literal["http", "websocket", "grpc"] = doc("what was served.")
    httpRequest: HttpRequest = doc("method, path, status, sizes, latency, client, agent, protocol.")
    trace: str | None = doc(
        "`projects/PROJECT/traces/TRACE_ID`, linking the entry to Cloud Trace; null without a trace "
        "or without a known project.",
        alias=TRACE_KEY,
    )
    span_id: str | None = doc(
        "16 hex: the proxy's server span (the caller's when not tracing).", alias=SPAN_KEY
    )
    sampled: bool = doc("whether the trace is sampled (recorded by a tracing backend).", alias=SAMPLED_KEY)
    trace_id: str | None = doc("32 hex: the W3C trace id, also without a project.")
    request_id: str = doc("the proxy's id for this request, as in every answer's `X-Request-Id`.")
    principal: str | None = doc("who: the verified email, lower-cased; null when unauthenticated.")
    credential: Literal["iap", "google_id_token", "ray_token"] | None = doc("how they proved it.")
    tenant: str = doc("the tenant (namespace) this proxy serves.")
    route: str | None = doc("the route pattern that matched, `/api/jobs/{job_or_submission_id}`.")
    verb: str | None = doc(
        "the verb the route needs: view, logs, submit, stop, delete, serve, debug, client."
    )
    decision: Literal["allow", "deny", "local", "error"] = doc(
        "allow: relayed to Ray · deny: refused (no or bad credentials, unknown route, cross-site, not "
        "granted) · local: answered by the proxy (probes) · error: the proxy could not serve it."
    )
    reason: str = doc("why, in words safe to show: the granting role, or what refused it.")
    source: str | None = doc(
        "what decided: a step (`target`, `authn`, `routes`, `cross-site`) or a policy source (`static`)."
    )
    job_id: str | None = doc("the Ray job or submission id the request names or creates, when known.")
    upstream_status: int | None = doc("Ray's status, when Ray answered.")
    duration_s: float = doc("the latency as a number of seconds.")
    peer: str = doc("the TCP peer: the load balancer, a Pod, or the client itself.")
    forwarded_for: str | None = doc("`X-Forwarded-For` as received (200 characters at most).")
    query: str | None = doc("the query string, redacted, at most 512 characters.")
    close_code: int | None = doc("the WebSocket close code the client got.")
    grpc: Grpc | None = doc("gRPC facts, for `kind` grpc.")
    aborted: Literal["client", "upstream", "cancelled"] | None = doc(
        "the answer was cut: the client went away, Ray failed mid-answer, or the proxy was stopping."
    )
    parser: str | None = doc("the HTTP parser's error type, for requests it refused before any handler.")
    extra: dict[str, str] | None = doc("other facts by name, for fields not (yet) in the schema.")


def _type(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "").replace("NoneType", "null")
    for name, shown in (("<class '", ""), ("'>", ""), ("proxy.telemetry.schema.", "")):
        text = text.replace(name, shown)
    return text.replace("Literal[", "one of [").replace(" | null", " or null")


def rows(model: type[BaseModel] = AccessRecord, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, type, meaning) for every field, nested ones as `httpRequest.status`."""
    out: list[tuple[str, str, str]] = []
    for name, info in model.model_fields.items():
        key = prefix + (info.alias or name)
        out.append((key, _type(info.annotation), info.description or ""))
        nested = next(
            (a for a in (info.annotation, *getattr(info.annotation, "__args__", ())) if _is_model(a)), None
        )
        if nested is not None:
            out += rows(nested, key + ".")
    return out


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


BEGIN, END = "<!-- access-record:begin (generated) -->", "<!-- access-record:end -->"


def markdown() -> str:
    lines = ["| key | type | meaning |", "|---|---|---|"]
    lines += [f"| `{k}` | {t.replace('|', '/')} | {d.replace('|', '/')} |" for k, t, d in rows()]
    return "\n".join(lines)


def splice(page: str) -> str:
    """`page` with the generated table between its markers."""
    head, sep, rest = page.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise ValueError(f"the page has no {BEGIN} ... {END} markers")
    return f"{head}{BEGIN}\n{markdown()}\n{END}{tail}"
