"""The Ray 2.60 dashboard in headless Chromium: browser -> dev-iap (IAP's stand-in) -> the proxy ->
a real Ray head with token auth on. Assertions are on what the page shows, and on what reached Ray.

One head for the module; one proxy + dev-iap per person (dev-iap signs everything as one email):
carol (reader: view, logs), bob (viewer: view only), alice (scientist: may submit, so a cross-site
request riding on her session is the dangerous one). Screenshots: see conftest.py.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from devkit.http import http_get
from devkit.rayhead import RayHead
from devkit.stack import TENANT, Stack
from tests.browser.conftest import OtherSite, Visit

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

H = "x-goog-iap-jwt-assertion"
SCRIPTS = {
    "hello.py": "for i in range(3):\n    print('hello from the cluster', i, flush=True)\n",
    "ticker.py": "import time\nfor i in range(600):\n    print('tick', i, flush=True)\n    time.sleep(0.5)\n",
}
Open = Callable[..., Visit]


@dataclass(frozen=True)
class Cluster:
    head: RayHead
    alice: Stack
    bob: Stack
    carol: Stack
    hello: str  # a finished job, submitted through the proxy with the real CLI
    ticker: str  # a running job that prints "tick N" twice a second
    node: str

    def ray_jobs(self) -> list[dict[str, Any]]:
        """Jobs as Ray itself lists them, asked directly with its token (not through the proxy)."""
        status, body = http_get(f"{self.head.dashboard_url}/api/jobs/", self.head.auth_headers, timeout=30)
        assert status == 200, body[:300]
        jobs: list[dict[str, Any]] = json.loads(body)
        return jobs


def _submission_id(output: str) -> str:
    m = re.search(r"raysubmit_[A-Za-z0-9]+", output)
    assert m, output
    return m.group(0)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with contextlib.ExitStack() as stop:
        head = stop.enter_context(RayHead())
        people = {
            name: stop.enter_context(
                Stack(tmp_path_factory.mktemp(name), head=head, browser_email=f"{name}@example.com")
            )
            for name in ("alice", "bob", "carol")
        }
        alice, code = people["alice"], tmp_path_factory.mktemp("code")
        for name, text in SCRIPTS.items():
            (code / name).write_text(text)
        r = alice.ray(
            "submit",
            "--working-dir",
            str(code),
            "--",
            "python",
            "hello.py",
            email="alice@example.com",
            timeout=120,
        )
        assert r.returncode == 0 and "hello from the cluster 2" in r.stdout, r.stdout + r.stderr
        hello = _submission_id(r.stdout)
        r = alice.ray(
            "submit",
            "--working-dir",
            str(code),
            "--no-wait",
            "--",
            "python",
            "ticker.py",
            email="alice@example.com",
            timeout=120,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        ticker = _submission_id(r.stdout)
        status, body = http_get(f"{head.dashboard_url}/api/v0/nodes", head.auth_headers, timeout=30)
        assert status == 200, body[:300]
        node = json.loads(body)["data"]["result"]["result"][0]["node_id"]
        yield Cluster(head, alice, people["bob"], people["carol"], hello, ticker, node)


def _no_refusals(v: Visit) -> None:
    assert v.refused() == [], f"refused while browsing: {v.refused()}"
    assert v.requests_to("/api/authentication_mode") >= 1  # the UI asked, and the proxy answered it
    v.no_token_prompt()


# -- a person with view (and logs) uses the dashboard --------------------------------------------------


def test_overview_shows_the_cluster_and_the_job(cluster: Cluster, visit: Open, shots: Path) -> None:
    v = visit(cluster.carol.browser_url)
    v.goto("/")
    expect(v.page.get_by_text("Recent jobs")).to_be_visible()
    expect(v.page.get_by_role("link", name=cluster.hello)).to_be_visible()  # under "Recent jobs"
    expect(v.page.get_by_text(f"Completed a ray job {cluster.hello}")).to_be_visible()  # cluster events
    expect(v.page.get_by_text("Node Status")).to_be_visible()
    expect(v.page.get_by_text(re.compile(r"\d+(\.\d+)?/2\.0 CPU")).first).to_be_visible()
    v.page.wait_for_load_state("networkidle")
    v.page.screenshot(path=shots / "dashboard-overview.png")
    _no_refusals(v)
    mode = v.page.evaluate("fetch('/api/authentication_mode').then(r => r.json())")
    assert mode == {"authentication_mode": "disabled"}


def test_jobs_list_detail_and_driver_logs(cluster: Cluster, visit: Open, shots: Path) -> None:
    v = visit(cluster.carol.browser_url)
    v.goto("/")
    v.page.get_by_role("link", name="Jobs", exact=True).click()
    row = v.page.get_by_role("row").filter(has_text=cluster.hello)
    expect(row).to_contain_text("SUCCEEDED")
    expect(v.page.get_by_role("row").filter(has_text=cluster.ticker)).to_contain_text("RUNNING")
    expect(v.page.get_by_text("Request Status: Fetched jobs")).to_be_visible()
    v.page.screenshot(path=shots / "dashboard-jobs.png")
    row.get_by_role("link").first.click()
    expect(v.page).to_have_url(re.compile(f"#/jobs/{cluster.hello}$"))
    expect(v.page.get_by_text("hello from the cluster 2")).to_be_visible()
    expect(v.page.get_by_text("hello from the cluster 0")).to_be_visible()
    v.page.screenshot(path=shots / "dashboard-job-logs.png")
    _no_refusals(v)
    assert v.requests_to("/api/v0/logs/file?") >= 1


def test_cluster_and_actors_pages(cluster: Cluster, visit: Open) -> None:
    v = visit(cluster.carol.browser_url)
    v.goto("/#/cluster")
    expect(v.page.get_by_text("Node List")).to_be_visible()
    expect(v.page.get_by_text(cluster.node).first).to_be_visible()
    expect(v.page.get_by_text("ALIVE").first).to_be_visible()
    v.page.get_by_role("link", name="Actors", exact=True).click()
    # every job runs a JobSupervisor actor named after its submission id
    expect(v.page.get_by_text(f"_ray_internal_job_actor_{cluster.hello}")).to_be_visible()
    expect(v.page.get_by_text("JobSupervisor").first).to_be_visible()
    _no_refusals(v)


def test_logs_viewer_opens_a_file_and_shows_it_growing(cluster: Cluster, visit: Open, shots: Path) -> None:
    v = visit(cluster.carol.browser_url)
    v.goto("/")
    v.page.get_by_role("link", name="Logs", exact=True).click()
    v.page.get_by_text(f"Node ID: {cluster.node}").click()
    v.page.get_by_role("link", name=f"job-driver-{cluster.hello}.log").click()
    expect(v.page.get_by_text("hello from the cluster 1")).to_be_visible()
    v.page.screenshot(path=shots / "dashboard-log-file.png")
    v.page.get_by_role("link", name=re.compile("back to", re.I)).click()
    v.page.get_by_role("link", name=f"job-driver-{cluster.ticker}.log").click()
    first = _newest_tick(v)
    v.page.wait_for_timeout(1500)  # the job prints twice a second
    v.page.get_by_role("button", name="Refresh", exact=True).click()  # (it also resets "Reverse")
    assert _newest_tick(v) >= first + 2  # the file grew, and the page shows it
    _no_refusals(v)


def _newest_tick(v: Visit) -> int:
    """The viewer renders a window of ~35 lines from the top: switch on "Reverse" to see the newest."""
    ticks = v.page.get_by_text(re.compile(r"^tick \d+$"))
    expect(v.page.get_by_text("tick 0", exact=True)).to_be_visible()
    v.page.get_by_role("checkbox").check()
    expect(ticks.first).not_to_have_text("tick 0")
    return max(int(t.split()[1]) for t in ticks.all_inner_texts())


def test_a_log_stream_reaches_the_page_as_it_is_written(cluster: Cluster, visit: Open) -> None:
    """`/api/v0/logs/stream` follows a file: chunks must arrive while the response is still open."""
    v = visit(cluster.carol.browser_url)
    v.goto("/")
    chunks = v.page.evaluate(
        """async (url) => {
        const r = await fetch(url), reader = r.body.getReader(), out = [], t0 = performance.now();
        while (performance.now() - t0 < 8000 && out.length < 4) {
            const {value, done} = await reader.read();
            if (done) break;
            out.push({ms: performance.now() - t0, text: new TextDecoder().decode(value)});
        }
        await reader.cancel();
        return {status: r.status, type: r.headers.get('content-type'), chunks: out};
    }""",
        f"/api/v0/logs/stream?node_id={cluster.node}&filename=job-driver-{cluster.ticker}.log&lines=2",
    )
    assert chunks["status"] == 200 and chunks["type"].startswith("text/plain")
    ticks = [[int(n) for n in re.findall(r"tick (\d+)", c["text"])] for c in chunks["chunks"]]
    assert len(ticks) >= 3 and all(ticks), chunks
    assert max(ticks[-1]) > max(ticks[0]), chunks  # later chunks carry newer lines
    assert chunks["chunks"][-1]["ms"] - chunks["chunks"][0]["ms"] > 500, chunks  # not one buffered blob
    _no_refusals(v)


# -- a person without `logs` ---------------------------------------------------------------------------


def test_viewer_sees_the_dashboard_and_a_quiet_refusal_on_logs(
    cluster: Cluster, visit: Open, shots: Path
) -> None:
    v = visit(cluster.bob.browser_url)
    v.goto(f"/#/jobs/{cluster.hello}")
    expect(v.page.get_by_text(cluster.hello).first).to_be_visible()
    expect(v.page.get_by_text("SUCCEEDED").first).to_be_visible()
    expect(v.page.get_by_text("Failed to load")).to_be_visible()  # the driver log pane
    expect(v.page.get_by_text("hello from the cluster 0")).to_have_count(0)
    v.page.screenshot(path=shots / "dashboard-viewer-logs-refused.png")
    before = v.requests_to("/api/v0/logs")
    v.page.wait_for_timeout(6000)  # the UI retries with back-off (SWR), never in a tight loop
    assert before >= 1 and v.requests_to("/api/v0/logs") - before <= 2, v.seen
    v.page.get_by_role("link", name="Logs", exact=True).click()
    v.page.get_by_text(f"Node ID: {cluster.node}").click()
    expect(v.page.get_by_text("No files found.")).to_be_visible()  # Ray's UI words for the 403
    v.page.get_by_role("link", name="Jobs", exact=True).click()  # and the UI still works
    expect(v.page.get_by_role("row").filter(has_text=cluster.hello)).to_contain_text("SUCCEEDED")
    v.no_token_prompt()
    refused = v.refused()
    assert refused and all(s.status == 403 and s.path.startswith("/api/v0/logs") for s in refused), refused
    denied = [r for r in cluster.bob.access_records() if r["decision"] == "deny"]
    assert denied and all(r["verb"] == "logs" and r["upstream_status"] is None for r in denied), denied


def test_auth_mode_disabled_is_what_keeps_the_token_prompt_away(cluster: Cluster, visit: Open) -> None:
    """The evidence for the proxy's answer: had it passed on Ray's own "token", Ray's UI would ask a
    person refused by policy for the cluster's token on every 403."""
    v = visit(cluster.bob.browser_url)
    v.goto(f"/#/jobs/{cluster.hello}")
    expect(v.page.get_by_text("Failed to load")).to_be_visible()
    v.no_token_prompt()

    what_ray_says = visit(cluster.bob.browser_url)
    what_ray_says.page.route(
        "**/api/authentication_mode",
        lambda route: route.fulfill(
            status=200, content_type="application/json", body='{"authentication_mode": "token"}'
        ),
    )
    what_ray_says.goto(f"/#/jobs/{cluster.hello}")
    expect(what_ray_says.page.get_by_text("Authentication Token Required")).to_be_visible()
    status, body = http_get(f"{cluster.head.dashboard_url}/api/authentication_mode")
    assert status == 200 and json.loads(body) == {"authentication_mode": "token"}


# -- what a person reads when refused ------------------------------------------------------------------


def test_refusal_page_for_a_person_json_for_the_dashboard(cluster: Cluster, visit: Open, shots: Path) -> None:
    v = visit(cluster.bob.browser_url)
    log_url = f"/api/v0/logs/file?node_id={cluster.node}&filename=job-driver-{cluster.hello}.log&lines=100"
    response = v.goto(log_url)
    assert response is not None and response.status == 403
    request_id = response.headers["x-request-id"]
    body = v.page.locator("body")
    expect(v.page.get_by_role("heading")).to_have_text("403 Not allowed")
    for shown in (
        "bob@example.com",
        TENANT,
        "Permission needed",
        request_id,
        "verb logs is not granted by role(s) viewer",
    ):
        expect(body).to_contain_text(shown)
    html = v.page.content()
    assert cluster.head.token not in html and "eyJ" not in html and "hello from the cluster" not in html
    assert response.headers["cache-control"] == "no-store"
    _page_shot(v, shots / "refusal-page.png")

    v.goto("/")  # the dashboard's own request for the same file: JSON its code can read
    answer = v.page.evaluate(
        """(url) => fetch(url, {headers: {Accept: 'application/json, text/plain, */*'}})
        .then(async r => ({status: r.status, type: r.headers.get('content-type'), body: await r.json()}))""",
        log_url,
    )
    assert answer["status"] == 403 and answer["type"].startswith("application/json")
    assert answer["body"]["error"] == "forbidden" and "verb logs" in answer["body"]["reason"]


def test_another_tenants_person_gets_the_page_not_the_dashboard(cluster: Cluster, visit: Open) -> None:
    token = cluster.bob.token("mallory@example.com")  # a scientist, but of team-b
    v = visit(cluster.bob.proxy_url, extra_http_headers={H: token})
    response = v.goto("/")
    assert response is not None and response.status == 403
    expect(v.page.locator("body")).to_contain_text("no role in tenant team-a")
    expect(v.page.locator("body")).to_contain_text("mallory@example.com")
    assert token not in v.page.content()


def test_expired_session_gets_a_401_not_a_cached_page(cluster: Cluster, visit: Open, shots: Path) -> None:
    carol = cluster.carol
    v = visit(carol.proxy_url, extra_http_headers={H: carol.token("carol@example.com")})
    v.goto("/#/jobs")
    expect(v.page.get_by_role("row").filter(has_text=cluster.hello)).to_contain_text("SUCCEEDED")
    expired = carol.token("carol@example.com", now=time.time() - 3600)
    v.context.set_extra_http_headers({H: expired})
    for navigate in (v.page.reload, lambda: v.goto("/")):
        response = navigate()
        assert response is not None and response.status == 401
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["www-authenticate"].startswith("IAP")
        expect(v.page.get_by_role("heading")).to_have_text("401 Sign-in required")
        expect(v.page.locator("body")).to_contain_text("invalid IAP assertion: expired")
        expect(v.page.locator("body")).to_contain_text("Reload the page to sign in again.")
        expect(v.page.get_by_text(cluster.hello)).to_have_count(0)
    assert expired not in v.page.content()
    _page_shot(v, shots / "session-expired.png")


def _page_shot(v: Visit, path: Path) -> None:
    """The proxy's own page is small: a window of its size."""
    v.page.set_viewport_size({"width": 900, "height": 460})
    v.page.screenshot(path=path)


# -- cross-site requests -------------------------------------------------------------------------------


def _other_site_pages(dashboard: str, ticker: str) -> dict[str, str]:
    ws = dashboard.replace("http://", "ws://", 1)
    json_in_a_form = """<input name='{"entrypoint": "echo pwned-by-form", "x": "' value='"}'>"""
    return {
        "form.html": f"""<!doctype html><title>cat pictures</title>
            <form id=f method=POST action="{dashboard}/api/jobs/" enctype="text/plain">{json_in_a_form}</form>
            <script>document.getElementById('f').submit()</script>""",
        "fetch.html": f"""<!doctype html><title>cat pictures</title><body><script>
            const mark = (k, v) => document.body.dataset[k] = v;
            fetch("{dashboard}/api/jobs/", {{method: "POST", mode: "no-cors", credentials: "include",
                body: JSON.stringify({{entrypoint: "echo pwned-by-fetch"}})}})
              .then((r) => mark("fetched", r.type), () => mark("fetched", "error"));
            const ws = new WebSocket("{ws}/api/jobs/{ticker}/logs/tail");
            ws.onmessage = (m) => mark("frames", "got " + m.data.length);
            ws.onclose = (e) => mark("closed", String(e.code));
            const gets = [["train", "/api/train/v2/runs"], ["dataset", "/api/data/datasets/{ticker}"]];
            for (const [k, path] of gets) {{
              const img = new Image();  // a GET with side effects, as any page can make one
              img.onerror = () => mark(k, "refused");
              img.onload = () => mark(k, "loaded");
              img.src = "{dashboard}" + path;
            }}
            </script></body>""",
        "link.html": f"""<!doctype html><title>wiki</title><a href="{dashboard}/#/jobs">Ray dashboard</a>""",
    }


def test_cross_site_writes_are_refused_before_ray(
    cluster: Cluster, visit: Open, tmp_path: Path, shots: Path
) -> None:
    alice = cluster.alice
    pages = _other_site_pages(alice.browser_url, cluster.ticker)
    jobs_before = len(cluster.ray_jobs())
    records_before = len(alice.access_records())
    with OtherSite(pages, tmp_path / "site") as site:
        for host, site_says in (("localhost", "cross-site"), ("127.0.0.1", "same-site")):
            v = visit(site.url(host, ""))
            with v.page.expect_response(lambda r: r.request.method == "POST") as posted:
                v.page.goto(site.url(host, "form.html"))  # the form posts itself on load
            assert posted.value.status == 403 and posted.value.url == f"{alice.browser_url}/api/jobs/"
            expect(v.page.get_by_role("heading")).to_have_text("403 Not allowed")  # the form's answer
            expect(v.page.locator("body")).to_contain_text(
                f"cross-origin POST refused (Sec-Fetch-Site: {site_says})"
            )
            expect(v.page.locator("body")).to_contain_text("came from a page on another site")
            if host == "localhost":
                _page_shot(v, shots / "refusal-cross-site.png")
            v.page.goto(site.url(host, "fetch.html"))
            expect(v.page.locator("body")).to_have_attribute("data-fetched", "opaque")  # sent; unreadable
            expect(v.page.locator("body")).to_have_attribute("data-closed", "1006")  # no handshake
            for k in ("train", "dataset"):  # GETs that connect a driver, create an actor: refused
                expect(v.page.locator("body")).to_have_attribute(f"data-{k}", "refused")
            assert v.page.locator("body").get_attribute("data-frames") is None

        v = visit(site.url("localhost", ""))  # a link from another site is a GET: it works
        v.page.goto(site.url("localhost", "link.html"))
        v.page.get_by_role("link", name="Ray dashboard").click()
        expect(v.page.get_by_role("row").filter(has_text=cluster.hello)).to_contain_text("SUCCEEDED")
        v.no_token_prompt()

    jobs = cluster.ray_jobs()
    assert len(jobs) == jobs_before and not any("pwned" in str(j.get("entrypoint")) for j in jobs)
    records = alice.access_records()[records_before:]
    posts = [r for r in records if r["httpRequest"]["requestMethod"] == "POST"]
    sockets = [r for r in records if r["httpRequest"]["requestUrl"].endswith("/logs/tail")]
    assert len(posts) == 4 and len(sockets) == 2, records
    for r in posts + sockets:
        assert (
            r["httpRequest"]["status"] == 403 and r["decision"] == "deny" and r["upstream_status"] is None
        ), r
        assert r["principal"] == "alice@example.com" and str(r["reason"]).startswith("cross-origin"), r
    assert all(str(r["reason"]).startswith("cross-origin WebSocket refused") for r in sockets), sockets
    side_effects = [r for r in records if r["route"] in ("/api/train/v2/runs", "/api/data/datasets/{job_id}")]
    assert len(side_effects) == 4, records
    for r in side_effects:
        assert (r["httpRequest"]["status"], r["upstream_status"]) == (403, None), r
        assert str(r["reason"]).startswith("cross-origin GET refused (Sec-Fetch-Site: "), r
