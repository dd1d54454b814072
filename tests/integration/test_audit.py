"""`ray-iap-proxy audit` over a log the real proxy wrote (HTTP, a job submitted and stopped, denials,
gRPC calls), with malformed lines in it; the same answers from the Cloud Logging export shape (the
record under `jsonPayload`, special fields lifted, a pretty-printed JSON array) and from BigQuery
rows; filters; constant memory over a large input."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from devkit.ray_double import ASSERTION
from devkit.records import AccessRecords
from proxy.audit import Filter, run
from proxy.cli import main
from proxy.grpc import CallRecord
from proxy.http.pipeline import PROXY

LIFTED = {  # what Cloud Logging moves out of jsonPayload into the LogEntry
    "severity": "severity",
    "httpRequest": "httpRequest",
    "logging.googleapis.com/trace": "trace",
    "logging.googleapis.com/spanId": "spanId",
    "logging.googleapis.com/trace_sampled": "traceSampled",
    "time": "timestamp",
}


def cloud_logging_entry(record: dict[str, Any]) -> dict[str, Any]:
    payload = {k: v for k, v in record.items() if k not in LIFTED}
    entry = {theirs: record[ours] for ours, theirs in LIFTED.items() if record.get(ours) is not None}
    entry |= {"insertId": "abc", "logName": "projects/p/logs/stdout", "jsonPayload": payload}
    entry["resource"] = {"type": "k8s_container", "labels": {"container_name": "iap-proxy"}}
    return entry


def bigquery_row(record: dict[str, Any]) -> dict[str, Any]:
    entry = cloud_logging_entry(record)
    entry["timestamp"] = entry["timestamp"].replace("T", " ").replace("Z", " UTC")
    entry["jsonPayload"].pop("ts")  # a query may leave it out: the timestamp column is enough
    return entry


def audit(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI in this process (`proxy.cli.main`), its streams captured; `real_audit` is the process."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    sys.stdin = io.StringIO(stdin or "")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["audit", *args])
    finally:
        sys.stdin = saved
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def real_audit(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "proxy", "audit", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def rows(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
async def recorded(make_client: Any, mint: Any, access_records: AccessRecords, tmp_path: Path) -> Path:
    """A log written by the real proxy, with two malformed lines and an application log line in it."""
    proxy = await make_client(access_log=access_records)
    alice, bob = mint(), mint("bob@example.com")
    await proxy.get("/api/version", headers={ASSERTION: alice})
    await proxy.post("/api/jobs/", headers={ASSERTION: alice}, json={"entrypoint": "python train.py"})
    await proxy.post("/api/jobs/", headers={ASSERTION: bob}, json={"entrypoint": "id"})  # viewer: denied
    await proxy.post("/api/jobs/raysubmit_1/stop", headers={ASSERTION: alice})
    await proxy.get("/api/version")  # no credentials
    telemetry = proxy.server.app[PROXY].telemetry
    for decision, code, who in (
        ("allow", "OK", "alice@example.com"),
        ("deny", "FAILED_PRECONDITION", "eve@x.org"),
    ):
        telemetry.record_grpc(
            CallRecord(
                "/ray.rpc.RayletDriver/Init",
                "client",
                who,
                decision,
                code,
                "d",  # type: ignore[arg-type]
                10,
                20,
                1,
                1,
                0.01,
                "c" * 32,
                "ipv4:10.0.0.7:5000",
                "iap" if who.startswith("a") else "",
            )
        )
    telemetry.writer.flush()
    lines = access_records.lines()
    assert len(lines) == 7
    lines.insert(2, '{"schema": "ray-iap-proxy/access/1", "cut off')
    lines.insert(5, "Traceback (most recent call last):")
    lines.append(json.dumps({"severity": "INFO", "message": "an application log line"}))
    path = tmp_path / "access.log"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_reports_over_a_recorded_log(recorded: Path) -> None:
    result = real_audit("access", "--format", "json", str(recorded))  # the real command, once
    access = rows(result)
    assert [(r["principal"], r["verb"], r["decision"], r["count"]) for r in access] == [
        ("-", "-", "deny", 1),
        ("alice@example.com", "client", "allow", 1),
        ("alice@example.com", "stop", "allow", 1),
        ("alice@example.com", "submit", "allow", 1),
        ("alice@example.com", "view", "allow", 1),
        ("bob@example.com", "submit", "deny", 1),
        ("eve@x.org", "client", "deny", 1),
    ]
    assert all(r["tenant"] == "team-a" for r in access)
    # the malformed lines are named, with their line numbers, and nothing else stopped
    assert f"{recorded}:3: skipped: not JSON" in result.stderr
    assert f"{recorded}:6: skipped: not JSON" in result.stderr
    assert "7 record(s) read, 7 matched, 7 row(s); 2 malformed, 1 other line(s) ignored" in result.stderr

    denials = rows(audit("denials", "--format", "json", str(recorded)))
    assert [(d["principal"], d["verb"], d["source"]) for d in denials] == [
        ("bob@example.com", "submit", "static"),
        ("-", "-", "authn"),
        ("eve@x.org", "client", "-"),
    ]
    assert denials[0]["reason"] == "verb submit is not granted by role(s) viewer in tenant team-a"
    assert denials[2]["status"] == "FAILED_PRECONDITION"

    jobs = rows(audit("jobs", "--format", "json", str(recorded)))
    assert [(j["principal"], j["verb"], j["decision"], j["status"]) for j in jobs] == [
        ("alice@example.com", "submit", "allow", 200),
        ("bob@example.com", "submit", "deny", 403),
        ("alice@example.com", "stop", "allow", 200),
    ]

    (session,) = [
        s
        for s in rows(audit("grpc", "--format", "json", str(recorded)))
        if s["principal"] == "alice@example.com"
    ]
    assert session["client_id"] == "c" * 32 and session["calls"] == 1 and session["bytes_out"] == 20
    assert session["codes"] == "OK:1"


def test_filters_and_the_table(recorded: Path) -> None:
    only = rows(
        audit(
            "records",
            "--format",
            "json",
            "--principal",
            "ALICE@example.com",
            "--verb",
            "submit",
            str(recorded),
        )
    )
    assert len(only) == 1 and only[0]["httpRequest"]["requestUrl"] == "/api/jobs/"
    assert (
        rows(
            audit(
                "records",
                "--format",
                "json",
                "--since",
                "2000-01-01T00:00:00Z",
                "--until",
                "2000-01-02T00:00:00Z",
                str(recorded),
            )
        )
        == []
    )
    assert (
        len(rows(audit("records", "--format", "json", "--since", "1h", "--decision", "deny", str(recorded))))
        == 3
    )
    assert len(rows(audit("records", "--format", "json", "--kind", "grpc", str(recorded)))) == 2
    table = audit("denials", str(recorded))
    header, *lines = table.stdout.splitlines()
    assert header.split() == ["TIME", "PRINCIPAL", "TENANT", "VERB", "REQUEST", "STATUS", "SOURCE", "REASON"]
    assert len(lines) == 3 and "bob@example.com" in lines[0] and "POST /api/jobs/" in lines[0]
    bad = real_audit("denials", "--since", "last tuesday", str(recorded))
    assert bad.returncode == 2 and "--since: 'last tuesday' is neither RFC 3339" in bad.stderr
    assert "Traceback" not in bad.stderr
    missing = audit("denials", str(recorded.parent / "nope.log"))
    assert missing.returncode == 2 and "cannot be read" in missing.stderr


def test_cloud_logging_and_bigquery_exports_give_the_same_answers(recorded: Path, tmp_path: Path) -> None:
    records = [
        json.loads(line)
        for line in recorded.read_text().splitlines()
        if line.startswith('{"schema"') and line.endswith("}")
    ]
    assert len(records) == 7
    exported = tmp_path / "gcloud.json"  # `gcloud logging read --format=json`: an indented array
    exported.write_text(json.dumps([cloud_logging_entry(r) for r in records], indent=2))
    sink = tmp_path / "bq.jsonl"  # a BigQuery sink's rows, one per line
    sink.write_text("\n".join(json.dumps(bigquery_row(r)) for r in records) + "\n")
    for report in ("access", "denials", "jobs", "grpc"):
        expected = rows(audit(report, "--format", "json", str(recorded)))
        assert rows(audit(report, "--format", "json", str(exported))) == expected, report
        assert rows(audit(report, "--format", "json", stdin=sink.read_text())) == expected, report
    piped = real_audit("jobs", "--format", "json", stdin=sink.read_text())  # a real pipe into stdin
    assert rows(piped) == rows(audit("jobs", "--format", "json", str(recorded)))
    broken = tmp_path / "broken.json"
    broken.write_text(exported.read_text()[:-400])  # an export cut short
    result = audit("denials", "--format", "json", str(broken))
    assert (
        result.returncode == 0
        and "skipped: the array is not closed" in result.stderr
        or "not JSON" in result.stderr
    )


class Lines(io.TextIOBase):
    """A large input that is never held: records made as they are read."""

    def __init__(self, record: str, count: int) -> None:
        self.record, self.count, self.buffer = record, count, ""

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> str:
        return self.readline(size)

    def readline(self, size: int | None = -1) -> str:
        if not self.buffer and self.count:
            self.count -= 1
            self.buffer = self.record
        limit = len(self.buffer) if size is None or size < 0 else size
        out, self.buffer = self.buffer[:limit], self.buffer[limit:]
        return out


class Discard(io.StringIO):
    def write(self, s: str) -> int:
        return len(s)


def test_a_large_input_is_streamed_in_constant_memory(recorded: Path) -> None:
    line = (
        next(x for x in recorded.read_text().splitlines() if '"verb":"submit"' in x and '"deny"' in x) + "\n"
    )
    count = 20_000  # ~25 MB of records
    tracemalloc.start()
    try:
        stats = run("denials", [(Lines(line, count), "big")], Filter(), "json", Discard())  # type: ignore[list-item]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stats.records == count and stats.rows == count
    assert peak < 1 << 20  # 25 MB in, 8 MB out, under 1 MiB held at any time
