"""`ray-iap-proxy explain`: like `kubectl auth can-i`, for one identity and one request (or every verb
with `--list`), decided by the same admission `serve` runs (see explain.py), with no network."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from urllib.parse import urlsplit

from ..errors import ConfigError
from ..model import CredentialKind
from ..settings.schema import TENANT_RE
from .common import EXIT_CONFIG, EXIT_NO, EXIT_OK, add_config, add_parser, load, print_problems, usage_error
from .explain import explain, verbs

DESCRIPTION = """\
What would this identity get for this request? The same decision `serve` makes (canonical target, Ray
route, verb, policy), with the identity given instead of verified, and no network.

  explain --config proxy.yaml --as bob@example.com --method POST /api/jobs/
  explain --config proxy.yaml --as bob@example.com --yes-no https://ray-team-a.example.com/api/jobs/
  explain --config proxy.yaml --as bob@example.com --list
  explain --config shared-policy.yaml --as bob@example.com --tenant team-b --list

Exit code: 0 allowed, 1 refused (with --list: 0), 2 the command line is wrong, 3 the config is wrong."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = add_parser(
        sub,
        "explain",
        "what would this identity get for this request? (like kubectl auth can-i)",
        DESCRIPTION,
    )
    add_config(s)
    s.add_argument(
        "--email", "--as", dest="email", required=True, metavar="EMAIL", help="the identity, as IAP signs it"
    )
    s.add_argument("--hd", metavar="DOMAIN", help="its hosted domain claim, for domain: members")
    s.add_argument(
        "--credential",
        default="iap",
        choices=[str(k) for k in CredentialKind],
        help="how the identity proves itself: IAP's assertion, a Google ID token, or the cluster's Ray "
        "token (then the principal is system:ray-token, whatever --email says)",
    )
    s.add_argument("--method", default="GET", help="the HTTP method (HEAD is classified as GET)")
    s.add_argument(
        "--job-owner",
        metavar="EMAIL",
        help="who submitted the job the request names, for `stop:own` and the like (default: nobody "
        "recorded, as for a job submitted around the proxy); `system:ray-token` for in-cluster callers",
    )
    s.add_argument(
        "--tenant",
        help="decide for this tenant instead of the config's (review a shared policy for another tenant)",
    )
    mode = s.add_mutually_exclusive_group()
    mode.add_argument("--yes-no", action="store_true", help="print only yes or no (the reason on stderr)")
    mode.add_argument("-q", "--quiet", action="store_true", help="print nothing: the exit code is the answer")
    mode.add_argument("--list", action="store_true", help="every verb, and whether the identity holds it")
    s.add_argument("--json", action="store_true", help="with --list: JSON instead of a table")
    s.add_argument(
        "--live",
        action="store_true",
        help="ask the live policy sources too (kubernetes_rbac: the API server; google_groups: Cloud "
        "Identity) with the config's credentials; without it they are listed as not consulted",
    )
    s.add_argument(
        "target",
        nargs="?",
        metavar="PATH_OR_URL",
        help="a request target (/api/jobs/?limit=5), a full URL (reduced to its path and query), or a Ray "
        "Client method (/ray.rpc.RayletDataStreamer/Datapath)",
    )
    s.set_defaults(func=run)


def request_target(text: str) -> str:
    """A path as given, or a URL reduced to the target a client would send (path and query)."""
    if text.startswith("/"):
        return text
    if not text.startswith(("http://", "https://")):
        usage_error("PATH_OR_URL", f"{text!r} must be a path starting with / or an http(s) URL")
    parts = urlsplit(text)
    rest = text[len(f"{parts.scheme}://{parts.netloc}") :].split("#", 1)[0]
    return rest if rest.startswith("/") else "/" + rest


def run(args: argparse.Namespace) -> int:
    if args.list == (args.target is not None):
        usage_error("PATH_OR_URL", "give one request target, or --list (not both)")
    if args.json and not args.list:
        usage_error("--json", "is for --list (explain prints JSON by default)")
    if args.tenant is not None and not TENANT_RE.match(args.tenant):
        usage_error("--tenant", f"{args.tenant!r} is not a Kubernetes namespace name")
    settings, policy = load(args.config)
    if args.tenant is not None:
        settings = settings.model_copy(update={"tenant": args.tenant})
    if args.list:
        return _list(args, asyncio.run(verbs(settings, policy, args.email, args.hd)), settings.tenant)
    target = request_target(args.target)
    try:  # --live: a kubeconfig or ServiceAccount that cannot be used is a config problem
        result = asyncio.run(
            explain(
                settings,
                policy,
                args.email,
                args.method.upper(),
                target,
                args.hd,
                args.job_owner,
                args.live,
                args.credential,
            )
        )
    except ConfigError as exc:
        print_problems(args.config, exc.problems)
        return EXIT_CONFIG
    if args.target != target:
        result["url"] = args.target
    allowed = result["decision"] == "allow"
    if args.yes_no:
        print("yes" if allowed else "no")
        if not allowed:
            print(f"{result['status']} {result['reason']}", file=sys.stderr)
    elif not args.quiet:
        print(json.dumps(result, indent=2))
    return EXIT_OK if allowed else EXIT_NO


def _list(args: argparse.Namespace, rows: list[dict[str, object]], tenant: str) -> int:
    if args.json:
        print(json.dumps({"identity": args.email.lower(), "tenant": tenant, "verbs": rows}, indent=2))
        return EXIT_OK
    print(f"# {args.email.lower()} in tenant {tenant}")
    print(f"{'VERB':<8} {'ALLOWED':<8} {'ROUTES':>6}  REASON")
    for row in rows:
        print(
            f"{row['verb']!s:<8} {'yes' if row['allowed'] else 'no':<8} {row['routes']!s:>6}  {row['reason']}"
        )
    return EXIT_OK
