"""The submitter, recorded in Ray: every `POST /api/jobs/` gets `metadata.submitted_by` set to the
caller's principal, over whatever the caller sent, the caller's other metadata kept.

The body is small JSON (Ray hands the runtime env and metadata to the driver in one environment
variable, capped by Linux at 128 KiB), so it is read whole, under `jobs.max_submission_bytes`, and
re-encoded: the same document as Ray would read it (Python's `json`, duplicate keys last-wins, like
Ray's own parsing), in ASCII, with a recomputed Content-Length. What Ray would refuse anyway is
mostly left to Ray; the proxy refuses with 400 what it must understand: a body that is not a JSON
object, `metadata` that is not an object, a submission id that is not a string.

It also refuses submission ids that would make one id name two jobs, or name a path: 8 hex digits
(the form of a Ray job id, which Ray resolves first, so a job could be named after the next driver's
id), `/`, `\\`, control characters, `.` and `..` (no request path can name them). When the caller
chooses no id, the proxy chooses one the way Ray does, so that the access record can carry it.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import string
import zlib
from dataclasses import dataclass

from aiohttp import web

from ..errors import BodyTooLarge, ClientFault, Kind, Malformed
from .ownership import OWNER_KEY

# Ray's generate_job_id (dashboard/modules/job/job_manager.py): no confusable characters.
_ID_CHARS = sorted(set(string.ascii_letters + string.digits) - set("IloO0"))
_JOB_ID_LIKE = re.compile(r"[0-9a-fA-F]{8}")
_UNADDRESSABLE = re.compile(r"[/\\\x00-\x1f\x7f]")
_UTF8 = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})


class BadSubmission(Malformed):
    """A job submission the proxy cannot record a submitter in (400)."""


@dataclass(frozen=True, slots=True)
class Submission:
    body: bytes  # what Ray receives
    submission_id: str  # the id Ray will give the job
    chosen_by_proxy: bool


def new_submission_id() -> str:
    return "raysubmit_" + "".join(secrets.choice(_ID_CHARS) for _ in range(16))


def _kind(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def rewrite(raw: bytes, charset: str | None, submitter: str, new_id: str | None = None) -> Submission:
    """The submission with `metadata.submitted_by = submitter`. Raises BadSubmission."""
    if charset is not None and charset.lower() not in _UTF8:
        raise BadSubmission(f"a job submission must be UTF-8 JSON, not {charset[:40]!r}")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadSubmission("the job submission is not UTF-8") from None
    except (ValueError, RecursionError):
        raise BadSubmission("the job submission is not valid JSON") from None
    if not isinstance(doc, dict):
        raise BadSubmission(f"a job submission must be a JSON object, not {_kind(doc)}")
    metadata = doc.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise BadSubmission(f"metadata must be a JSON object of strings, not {_kind(metadata)}")
    doc["metadata"] = {**(metadata or {}), OWNER_KEY: submitter}

    # Ray reads `submission_id or job_id` (the deprecated name), and makes one up when neither is set.
    chosen = doc.get("submission_id") or doc.get("job_id")
    if chosen and not isinstance(chosen, str):
        raise BadSubmission(f"submission_id must be a string, not {_kind(chosen)}")
    generated = not chosen
    if chosen:
        _check_id(chosen)
    else:
        chosen = new_id or new_submission_id()
        doc["submission_id"] = chosen
    try:
        body = json.dumps(doc, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    except (ValueError, RecursionError):  # pragma: no cover - what json.loads read, it can write
        raise BadSubmission("the job submission cannot be re-encoded") from None
    return Submission(body, chosen, chosen_by_proxy=generated)


def _check_id(value: str) -> None:
    shown = value[:80]
    if _JOB_ID_LIKE.fullmatch(value):
        raise BadSubmission(
            f"submission id {shown!r} has the form of a Ray job id (8 hex digits), which Ray looks up "
            "first: one id could name two jobs. Choose another"
        )
    if _UNADDRESSABLE.search(value) or value in (".", ".."):
        raise BadSubmission(f"submission id {shown!r} cannot be named in a request path. Choose another")


async def read_body(request: web.Request, limit: int, seconds: float) -> bytes:
    """The whole request body, at most `limit` bytes, within `seconds` overall."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(seconds):
            while chunk := await request.content.readany():  # each chunk non-empty: at most `limit` turns
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise ClientFault(f"request body not received within {seconds:g} s", Kind.CLIENT_TIMEOUT) from None
    except web.RequestPayloadError:
        raise ClientFault("malformed request body") from None
    return b"".join(chunks)


def decode_body(raw: bytes, encoding: str | None, limit: int) -> bytes:
    """A submission as the client compressed it (the listener relays bodies as they came), inflated
    under the same bound as a plain one. Only gzip and deflate: anything else is refused."""
    codings = [c.strip().lower() for c in (encoding or "").split(",")]
    for coding in reversed([c for c in codings if c and c != "identity"]):
        if coding not in _WBITS:
            raise BadSubmission(f"a submission encoded as {coding[:20]!r} cannot be read: send JSON or gzip")
        inflater = zlib.decompressobj(_WBITS[coding])
        try:
            out = inflater.decompress(raw, limit + 1)
        except zlib.error:
            raise BadSubmission(f"the submission body is not valid {coding}") from None
        if len(out) > limit or inflater.unconsumed_tail:
            raise BodyTooLarge(limit)
        if not inflater.eof:
            raise BadSubmission(f"the submission body is truncated {coding}")
        raw = out
    return raw


_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
