"""Header hygiene, pure. What the client sent is filtered before Ray sees it; what Ray answers is
filtered before the client sees it.

Names are compared after lower-casing and mapping `_` to `-`, so `X_Ray_Authorization` and
`AUTHORIZATION` are the same header here as they may be to some server behind us.

Credential cookies are dropped however they are written. Every parser behind us may read a Cookie
header differently: RFC 6265 separates pairs with `;` only, older ones also split on `,`, honour
RFC 2965's `$Version`/`$Path` attributes, strip quotes and whitespace, or fold case. So a pair is
dropped when *any* reading of it names a credential cookie, and `$` attributes are never passed on.
"""

from __future__ import annotations

from collections.abc import Iterable
from http.cookies import SimpleCookie

Headers = list[tuple[str, str]]

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
    }
)
# Credentials and identity claims of the caller: never forwarded, in any spelling.
CREDENTIALS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-ray-authorization",
        "x-authenticated-user",
        "x-forwarded-user",
        "x-forwarded-email",
        "x-remote-user",
        "x-remote-groups",
    }
)
# Headers that some servers let override the method or the path: never forwarded.
REWRITERS = frozenset(
    {
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-original-url",
        "x-rewrite-url",
        "x-original-uri",
        "forwarded",
    }
)
# Set by the client stack itself, or by us.
TRANSPORT = frozenset({"host", "content-length", "expect"})
# Cookie carriers: filtered pair by pair (`cookie`), or never forwarded at all (RFC 2965's `cookie2`).
COOKIE_HEADERS = frozenset({"cookie", "cookie2"})
# Cookies that carry credentials, as normalized by `cookie_name`: Ray's own token, and every cookie
# of IAP's sign-in (`GCP_IAP_UID`, `GCP_IAP_XSRF_NONCE_<id>`, `__Host-GCP_IAP_AUTH_TOKEN_<id>`, and
# the legacy `GCP_IAAP_AUTH_TOKEN[_<id>]`); any `__Host-`/`__Secure-` prefix is looked through.
SECRET_COOKIE_PREFIXES = ("ray-authentication-token", "gcp-iap", "gcp-iaap")
_COOKIE_NAME_PREFIXES = ("host-", "secure-")  # `__Host-`, `__Secure-` once `_` reads as `-`
RAY_TOKEN_HEADER = "X-Ray-Authorization"


# Never forwarded to Ray, by name (the Cookie header is rebuilt without credential cookies).
_DROPPED = HOP_BY_HOP | CREDENTIALS | REWRITERS | TRANSPORT | COOKIE_HEADERS
_DROPPED_PREFIXES = ("x-goog-", "x-forwarded-")
_NORMS: dict[str, str] = {}  # names seen, normalized: the same few dozen on every request
_NORMS_MAX, _NORM_NAME_MAX = 4096, 64  # beyond them (a client inventing names) normalized afresh
_NO_TOKENS: frozenset[str] = frozenset()


def norm(name: str) -> str:
    n = _NORMS.get(name)
    if n is None:
        n = name.strip().lower().replace("_", "-")
        if len(_NORMS) < _NORMS_MAX and len(name) <= _NORM_NAME_MAX:
            _NORMS[name] = n
    return n


def _dropped(n: str, connection_tokens: frozenset[str]) -> bool:
    """Whether a header, by its normalized name `n`, is kept from Ray."""
    return n in _DROPPED or n in connection_tokens or n.startswith(_DROPPED_PREFIXES)


def _connection_tokens(headers: Iterable[tuple[str, str]]) -> frozenset[str]:
    tokens: set[str] = set()
    for name, value in headers:
        if norm(name) == "connection":
            tokens.update(norm(t) for t in value.split(",") if t.strip())
    return frozenset(tokens - {"close", "keep-alive"}) if tokens else _NO_TOKENS


def cookie_name(raw: str) -> str:
    """A cookie name as the most lenient parser would read it: whitespace, quotes and a leading `$`
    stripped, lower-case, `_` as `-`, without the `__Host-`/`__Secure-` prefix."""
    name = norm(raw.strip().strip("\"'").lstrip("$").strip()).lstrip("-")
    for prefix in _COOKIE_NAME_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def is_secret_cookie(name: str) -> bool:
    return cookie_name(name).startswith(SECRET_COOKIE_PREFIXES)


def _names_a_secret(pair: str) -> bool:
    """Whether a `;`-separated pair names a credential cookie, read as one pair or split on `,`."""
    return any(is_secret_cookie(piece.partition("=")[0]) for piece in pair.split(","))


def filter_cookie(value: str) -> str | None:
    """The Cookie header without credential cookies and without `$` attributes; None when nothing
    is left. A pair is kept whole or dropped whole: `prefs=a,b` stays as it is."""
    kept = []
    for pair in value.split(";"):
        name, sep, _ = pair.partition("=")
        name = name.strip()
        if not sep or not name or name.startswith("$") or _names_a_secret(pair):
            continue
        kept.append(pair.strip())
    return "; ".join(kept) or None


def request_headers(incoming: Iterable[tuple[str, str]], ray_token: str | None) -> Headers:
    """Headers to send to Ray: the client's minus hop-by-hop, credentials and rewriters; plus Ray's token."""
    incoming = list(incoming)
    tokens = _connection_tokens(incoming)
    out: Headers = []
    cookies: list[str] = []
    for name, value in incoming:
        n = norm(name)
        if not _dropped(n, tokens):
            out.append((name, value))
        elif n == "cookie" and (kept := filter_cookie(value)):
            cookies.append(kept)
    out += [("Cookie", kept) for kept in cookies]  # after the others, in the client's order
    if ray_token:
        out.append((RAY_TOKEN_HEADER, f"Bearer {ray_token}"))
    return out


def response_headers(incoming: Iterable[tuple[str, str]]) -> Headers:
    """Headers to send to the client: Ray's minus hop-by-hop and any Ray credential cookie."""
    incoming = list(incoming)
    tokens = _connection_tokens(incoming)
    out: Headers = []
    for name, value in incoming:
        n = norm(name)
        if n in HOP_BY_HOP or n in tokens:
            continue
        if n == "set-cookie2" or (n == "set-cookie" and _sets_secret_cookie(value)):
            continue
        out.append((name, value))
    return out


def _sets_secret_cookie(value: str) -> bool:
    if any(_names_a_secret(pair) for pair in value.split(";")):
        return True
    try:
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(value)
    except Exception:  # unparseable Set-Cookie: drop it rather than guess
        return True
    return any(is_secret_cookie(name) for name in cookie) or not cookie


def iap_headers(incoming: Iterable[tuple[str, str]], assertion: str) -> Headers:
    """What Google's IAP would pass on (for `dev-iap`): client `x-goog-*` stripped, its own assertion
    added, the Host preserved (so Origin checks behind it see what the browser saw)."""
    incoming = list(incoming)
    tokens = _connection_tokens(incoming)
    out: Headers = [
        (k, v)
        for k, v in incoming
        if not (
            norm(k) in HOP_BY_HOP
            or norm(k) in tokens
            or norm(k) in ("content-length", "expect")
            or norm(k).startswith("x-goog-")
        )
    ]
    out.append(("x-goog-iap-jwt-assertion", assertion))
    return out
