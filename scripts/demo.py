"""`make demo`: a real Ray head (token auth on), ray-iap-proxy in front, dev-iap in front of that.

Shows alice's `ray job submit` with a working dir (examples/) streaming its logs, bob (viewer) listing
jobs but refused a submit, and a request without an IAP assertion refused; then serves until Ctrl-C.
`--once` runs the showcase and exits: 0 only if every step behaved.

The proxy and dev-iap get the ports the quickstart documents (8265, 8080). A socket of the last run
still in TIME_WAIT does not count as taken (the proxy binds with SO_REUSEADDR, and so does the probe);
a port another process listens on does, and then the demo says so loudly and uses a free one.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devkit.ports import free_port
from devkit.stack import Stack

ROOT = Path(__file__).resolve().parents[1]
BOLD, GREEN, RED, DIM, RESET = (
    ("\033[1m", "\033[32m", "\033[31m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "", "", "")
)


PROXY_PORT, IAP_PORT = 8265, 8080  # docs/quickstart.md


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Could a listener bind `port` now? Probed as the proxy and dev-iap bind (asyncio's
    `reuse_address`): a TIME_WAIT socket left by the last run does not hold the port, a listener does."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def documented_port(preferred: int, what: str, say: Callable[[str], None] = print) -> int:
    """`preferred` when it is free; otherwise a free port, and a loud message saying which and why."""
    if port_is_free(preferred):
        return preferred
    port = free_port()
    say(
        f"{RED}{BOLD}!! Port {preferred} is taken: another process listens on it "
        f"(`ss -ltnp 'sport = :{preferred}'` names it).\n"
        f"!! {what} is on 127.0.0.1:{port} instead: where the docs say {preferred}, use {port}.{RESET}"
    )
    return port


def try_it(proxy_url: str, key: Path) -> str:
    """The quickstart's "The CLI through the proxy" commands, for this run's port and key."""
    return (
        f"TOKEN=$(.venv/bin/ray-iap-proxy dev-token --key {key} --as alice@example.com)\n"
        f".venv/bin/ray job submit --address {proxy_url} \\\n"
        '    --headers "{\\"x-goog-iap-jwt-assertion\\": \\"$TOKEN\\"}" \\\n'
        "    --working-dir examples -- python train.py\n"
    )


def step(title: str, check: Callable[[], tuple[bool, str]]) -> bool:
    print(f"\n{BOLD}{title}{RESET}", flush=True)
    ok, detail = check()
    print(textwrap.indent(detail.rstrip(), "    "))
    print(f"  {GREEN}✓ as expected{RESET}" if ok else f"  {RED}✗ NOT as expected{RESET}", flush=True)
    return ok


def showcase(stack: Stack) -> bool:
    results = []
    submit = ("submit", "--working-dir", "examples", "--", "python", "train.py")  # as docs/quickstart.md

    def alice_submit() -> tuple[bool, str]:
        r = stack.ray(*submit, email="alice@example.com", cwd=ROOT)
        lines = [
            ln for ln in r.stdout.splitlines() if "squares" in ln or "hello from" in ln or "succeeded" in ln
        ]
        return r.returncode == 0 and "[0, 1, 4, 9, 16]" in r.stdout, "\n".join(lines) or r.stdout + r.stderr

    def bob_lists() -> tuple[bool, str]:
        r = stack.ray("list", email="bob@example.com")
        jobs = r.stdout.count("submission_id='raysubmit_")
        return r.returncode == 0 and jobs >= 1, f"bob sees {jobs} job(s)"

    def bob_submits() -> tuple[bool, str]:
        r = stack.ray(*submit, email="bob@example.com", cwd=ROOT)
        out = r.stdout + r.stderr
        reason = next((ln[ln.find("{") :] for ln in out.splitlines() if '"error"' in ln), out[-300:])
        return r.returncode != 0 and "forbidden" in out, f"refused: {reason}"

    def nobody() -> tuple[bool, str]:
        r = stack.ray("list")
        out = r.stdout + r.stderr
        reason = next((ln[ln.find("{") :] for ln in out.splitlines() if '"error"' in ln), out[-300:])
        return r.returncode != 0 and "unauthenticated" in out, f"refused: {reason}"

    results.append(
        step(
            f"1. alice (scientist) submits with a working dir: ray job submit --address {stack.proxy_url} "
            "--headers '{\"x-goog-iap-jwt-assertion\": …}' --working-dir examples -- python train.py",
            alice_submit,
        )
    )
    results.append(step("2. bob (viewer) lists jobs: ray job list", bob_lists))
    results.append(step("3. bob (viewer) tries to submit", bob_submits))
    results.append(step("4. a request with no IAP assertion", nobody))

    print(f"\n{BOLD}The access log ({stack.access_log.relative_to(ROOT)}), one record per request:{RESET}")
    for rec in stack.access_records()[-8:]:
        print(f"    {DIM}{record_line(rec)}{RESET}")
    return all(results)


def record_line(rec: dict[str, Any]) -> str:
    """One access record as a line: method, path, who, verb, decision, status (Cloud Logging's
    `httpRequest` shape, or the flat one before it)."""
    http = rec.get("httpRequest") or {}
    method = rec.get("method") or http.get("requestMethod") or "-"
    path = str(rec.get("path") or http.get("requestUrl") or "-")
    who = rec.get("principal") or rec.get("email")
    status = rec.get("status") or http.get("status")
    return (
        f"{method:<6} {path[:48]:<48} {who!s:<20} {rec.get('verb')!s:<7} {rec.get('decision')!s:<6} {status}"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--once", action="store_true", help="run the showcase, stop everything, exit")
    args = p.parse_args()
    workdir = ROOT / ".demo"
    workdir.mkdir(exist_ok=True)
    print(
        f"{BOLD}Starting a Ray 2.60 head with token auth, ray-iap-proxy and dev-iap on loopback…{RESET}",
        flush=True,
    )
    stack = Stack(
        workdir / "run",
        proxy_port=documented_port(PROXY_PORT, "the proxy"),
        iap_port=documented_port(IAP_PORT, "dev-iap"),
    )
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        stack.start()
        print(
            f"  Ray dashboard  {stack.head.dashboard_url}  (loopback only; needs Ray's token)\n"
            f"  the proxy      {stack.proxy_url}  (needs an IAP assertion)\n"
            f"  dev-iap        {stack.browser_url}  (signs every request as alice@example.com)"
        )
        ok = showcase(stack)
        if args.once:
            print(f"\n{BOLD}{'All steps behaved.' if ok else 'Some steps did not behave.'}{RESET}")
            return 0 if ok else 1
        print(
            f"\n{BOLD}Open {stack.browser_url} in a browser: the Ray dashboard, signed in as alice through "
            f"dev-iap.{RESET}\nOr, in another shell in this directory, submit as alice yourself:\n\n"
            + textwrap.indent(try_it(stack.proxy_url, stack.key_path.relative_to(ROOT)), "  ")
            + "\nCtrl-C stops everything.",
            flush=True,
        )
        try:
            while not stopping.wait(1):
                pass
        except KeyboardInterrupt:
            pass
        return 0 if ok else 1
    finally:
        print("\nStopping dev-iap, the proxy and Ray…", flush=True)
        stack.stop()
        print("Stopped.")


if __name__ == "__main__":
    sys.exit(main())
