"""The submission rewrite: the submitter recorded over any claim, everything else kept in meaning."""

from __future__ import annotations

import json
import re

import pytest

from proxy.errors import Kind
from proxy.jobs.submission import BadSubmission, new_submission_id, rewrite

ANA = "ana@example.com"


def doc(raw: bytes, charset: str | None = None, submitter: str = ANA) -> dict[str, object]:
    out: dict[str, object] = json.loads(rewrite(raw, charset, submitter, new_id="raysubmit_fixed").body)
    return out


@pytest.mark.parametrize(
    "body, metadata",
    [
        (b'{"entrypoint": "x"}', {"submitted_by": ANA}),
        (b'{"entrypoint": "x", "metadata": null}', {"submitted_by": ANA}),
        (b'{"entrypoint": "x", "metadata": {}}', {"submitted_by": ANA}),
        (b'{"entrypoint": "x", "metadata": {"team": "vision"}}', {"team": "vision", "submitted_by": ANA}),
        (b'{"entrypoint": "x", "metadata": {"submitted_by": "lea@example.com"}}', {"submitted_by": ANA}),
        (
            b'{"entrypoint": "x", "metadata": {"submitted_by": "lea@example.com", "a": "1"}}',
            {"submitted_by": ANA, "a": "1"},
        ),
        # duplicate keys: the last wins, as in Ray's own json.loads, and the claim still loses
        (
            b'{"metadata": {"submitted_by": "ana"}, "metadata": {"submitted_by": "lea"}}',
            {"submitted_by": ANA},
        ),
    ],
    ids=["none", "null", "empty", "kept", "claim-overwritten", "claim-overwritten-rest-kept", "duplicates"],
)
def test_the_submitter_is_recorded_over_any_claim(body: bytes, metadata: dict[str, str]) -> None:
    assert doc(body)["metadata"] == metadata


def test_everything_else_is_unchanged_in_meaning() -> None:
    original = {
        "entrypoint": "python train.py --lr 1e-3 'ünïcode' \u2603",
        "submission_id": "my-run-7",
        "runtime_env": {"env_vars": {"TOKEN": "s3cr3t", "EMPTY": ""}, "pip": ["torch==2.1"]},
        "entrypoint_num_cpus": 0.5,
        "entrypoint_num_gpus": 1,
        "entrypoint_memory": 12345678901234567890,
        "entrypoint_resources": {"TPU": 4.0},
        "entrypoint_label_selector": {"zone": "a"},
        "unknown_future_field": [1, None, True, {"deep": [1.5e300]}],
    }
    raw = json.dumps(original, ensure_ascii=False).encode()
    out = rewrite(raw, "utf-8", ANA)
    back = json.loads(out.body)
    assert back.pop("metadata") == {"submitted_by": ANA}
    assert back == original
    assert out.submission_id == "my-run-7" and not out.chosen_by_proxy
    out.body.decode("ascii")  # re-encoded as ASCII: no charset question for Ray


def test_the_proxy_chooses_an_id_like_ray_when_none_is_given() -> None:
    out = rewrite(b'{"entrypoint": "x"}', None, ANA)
    assert out.chosen_by_proxy and re.fullmatch(r"raysubmit_[A-HJ-NP-Za-km-z1-9]{16}", out.submission_id)
    assert json.loads(out.body)["submission_id"] == out.submission_id
    assert new_submission_id() != new_submission_id()


@pytest.mark.parametrize(
    "body, chosen",
    [
        (b'{"submission_id": "a"}', "a"),
        (b'{"job_id": "legacy"}', "legacy"),  # Ray reads `submission_id or job_id`
        (b'{"submission_id": "", "job_id": "legacy"}', "legacy"),
        (b'{"submission_id": null}', "raysubmit_fixed"),
    ],
    ids=["submission_id", "job_id", "empty-then-job_id", "null"],
)
def test_the_id_ray_will_use_is_the_one_recorded(body: bytes, chosen: str) -> None:
    assert rewrite(body, None, ANA, new_id="raysubmit_fixed").submission_id == chosen


@pytest.mark.parametrize(
    "body, charset, why",
    [
        (b"", None, "not valid JSON"),
        (b"{", None, "not valid JSON"),
        (b"[1, 2]", None, "must be a JSON object, not an array"),
        (b'"x"', None, "must be a JSON object, not a string"),
        (b"null", None, "must be a JSON object, not null"),
        (b"3", None, "must be a JSON object, not a number"),
        (b'{"metadata": "ana"}', None, "metadata must be a JSON object of strings, not a string"),
        (b'{"metadata": ["submitted_by"]}', None, "metadata must be a JSON object of strings, not an array"),
        (b'{"submission_id": 7}', None, "submission_id must be a string, not a number"),
        (b'{"submission_id": "0a0b0c0d"}', None, "has the form of a Ray job id"),
        (b'{"job_id": "02000000"}', None, "has the form of a Ray job id"),
        (b'{"submission_id": "../runtime_env_agent"}', None, "cannot be named in a request path"),
        (b'{"submission_id": "a\\\\b"}', None, "cannot be named in a request path"),
        (b'{"submission_id": "a\\nb"}', None, "cannot be named in a request path"),
        (b'{"submission_id": ".."}', None, "cannot be named in a request path"),
        (b"\xff\xfe{}", None, "not UTF-8"),
        ('{"entrypoint": "x"}'.encode("utf-16"), "utf-16", "must be UTF-8 JSON, not 'utf-16'"),
        (b"[" * 100_000, None, "not valid JSON"),
    ],
    ids=lambda v: v[:24].decode(errors="replace") if isinstance(v, bytes) else str(v)[:30],
)
def test_what_the_proxy_cannot_record_a_submitter_in_is_a_400(
    body: bytes, charset: str | None, why: str
) -> None:
    with pytest.raises(BadSubmission) as err:
        rewrite(body, charset, ANA)
    assert why in err.value.reason and err.value.kind is Kind.MALFORMED


@pytest.mark.parametrize("charset", ["utf-8", "UTF-8", "utf8", "us-ascii", None])
def test_utf8_charsets_are_accepted(charset: str | None) -> None:
    assert doc(b'{"entrypoint": "\xc3\xa9"}', charset)["entrypoint"] == "\u00e9"


def test_the_principal_is_written_as_given() -> None:
    assert doc(b"{}", submitter="system:ray-token")["metadata"] == {"submitted_by": "system:ray-token"}
