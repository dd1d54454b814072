"""`make demo`: a real Ray head (token auth on), ray-iap-proxy in front, dev-iap in front of that.

Shows alice's `ray job submit` with a working dir streaming its logs, bob (viewer) listing jobs but
refused a submit, and a request without an IAP assertion refused; then serves until Ctrl-C.
`--once` runs the showcase and exits: 0 only if every step behaved.
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

from devkit.stack import Stack

ROOT = Path(__file__).resolve().parents[1]
BOLD, GREEN, RED, DIM, RESET = (
    ("\033[1m", "\033[32m", "\033[31m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "", "", "")
)


def port_or_free(preferred: int) -> int | None:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            return None
    return preferred


def step(title: str, check: Callable[[], tuple[bool, str]]) -> bool:
    print(f"\n{BOLD}{title}{RESET}", flush=True)
    ok, detail = check()
    print(textwrap.indent(detail.rstrip(), "    "))
    print(f"  {GREEN}✓ as expected{RESET}" if ok else f"  {RED}✗ NOT as expected{RESET}", flush=True)
    return ok


def showcase(stack: Stack, workdir: Path) -> bool:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "train.py").write_text(
        textwrap.dedent("""\
        import ray, socket
        ray.init()
        @ray.remote
        def square(x):
            return x * x
        print("squares computed on the cluster:", ray.get([square.remote(i) for i in range(5)]))
        print("hello from", socket.gethostname())
        """)
    )
    results = []

    def alice_submit() -> tuple[bool, str]:
        r = stack.ray(
            "submit", "--working-dir", str(workdir), "--", "python", "train.py", email="alice@example.com"
        )
        lines = [
            ln for ln in r.stdout.splitlines() if "squares" in ln or "hello from" in ln or "succeeded" in ln
        ]
        return r.returncode == 0 and "[0, 1, 4, 9, 16]" in r.stdout, "\n".join(lines) or r.stdout + r.stderr

    def bob_lists() -> tuple[bool, str]:
        r = stack.ray("list", email="bob@example.com")
        jobs = r.stdout.count("submission_id='raysubmit_")
        return r.returncode == 0 and jobs >= 1, f"bob sees {jobs} job(s)"

    def bob_submits() -> tuple[bool, str]:
        r = stack.ray(
            "submit", "--working-dir", str(workdir), "--", "python", "train.py", email="bob@example.com"
        )
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
            "--headers '{\"x-goog-iap-jwt-assertion\": …}' --working-dir . -- python train.py",
            alice_submit,
        )
    )
    results.append(step("2. bob (viewer) lists jobs: ray job list", bob_lists))
    results.append(step("3. bob (viewer) tries to submit", bob_submits))
    results.append(step("4. a request with no IAP assertion", nobody))

    print(f"\n{BOLD}The access log ({stack.access_log.relative_to(ROOT)}), one record per request:{RESET}")
    for rec in stack.access_records()[-8:]:
        print(
            f"    {DIM}{rec['method']:<6} {rec['path'][:48]:<48} {str(rec['email']):<20} "
            f"{str(rec['verb']):<7} {rec['decision']:<6} {rec['status']}{RESET}"
        )
    return all(results)


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
    stack = Stack(workdir / "run", proxy_port=port_or_free(8265), iap_port=port_or_free(8080))
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        stack.start()
        print(
            f"  Ray dashboard  {stack.head.dashboard_url}  (loopback only; needs Ray's token)\n"
            f"  the proxy      {stack.proxy_url}  (needs an IAP assertion)\n"
            f"  dev-iap        {stack.browser_url}  (signs every request as alice@example.com)"
        )
        ok = showcase(stack, workdir / "job")
        if args.once:
            print(f"\n{BOLD}{'All steps behaved.' if ok else 'Some steps did not behave.'}{RESET}")
            return 0 if ok else 1
        print(
            f"\n{BOLD}Open {stack.browser_url} in a browser: the Ray dashboard, signed in as alice through "
            f"dev-iap.{RESET}\nMint a token for the CLI: {sys.executable} -m proxy dev-token --key "
            f"{stack.key_path} --as bob@example.com\nCtrl-C stops everything.",
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
