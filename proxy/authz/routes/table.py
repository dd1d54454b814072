"""A route table compiled once: literal paths in a dict, parameterised ones as anchored regexes.

Classification is pure and exact: the canonical request path (see `target.py`) is matched against
literal segments and single-segment parameters, case-sensitively, the way Ray's aiohttp router does.
HEAD is classified as GET. Anything not in the table is `None`, which admission refuses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ...model import Route

_PARAM = re.compile(r"\{(\w+)(?::([^}]+))?\}")


def _compile(pattern: str) -> re.Pattern[str]:
    out, pos = [], 0
    for m in _PARAM.finditer(pattern):
        out.append(re.escape(pattern[pos : m.start()]))
        out.append(f"(?P<{m.group(1)}>{m.group(2) or '[^/]+'})")
        pos = m.end()
    out.append(re.escape(pattern[pos:]))
    return re.compile("".join(out))


@dataclass(frozen=True, slots=True)
class RouteTable:
    """Routes compiled once: literal paths in a dict, parameterised ones as anchored regexes."""

    literal: dict[tuple[str, str], Route]
    dynamic: tuple[tuple[str, re.Pattern[str], Route], ...]

    @classmethod
    def build(cls, routes: Iterable[Route]) -> RouteTable:
        literal: dict[tuple[str, str], Route] = {}
        dynamic: list[tuple[str, re.Pattern[str], Route]] = []
        for r in routes:
            key = (r.method, r.pattern)
            if key in literal or any(m == r.method and d.pattern == r.pattern for m, _, d in dynamic):
                raise ValueError(f"duplicate route {r.name}")
            if "{" in r.pattern:
                dynamic.append((r.method, _compile(r.pattern), r))
            else:
                literal[key] = r
        return cls(literal, tuple(dynamic))

    def classify(self, method: str, path: str) -> Route | None:
        """The route for an exact (canonical) path, or None. HEAD is a GET."""
        if method == "HEAD":
            method = "GET"
        route = self.literal.get((method, path))
        if route is not None:
            return route
        for m, regex, r in self.dynamic:
            if m == method and regex.fullmatch(path):
                return r
        return None

    def param(self, route: Route, path: str, name: str) -> str | None:
        """The raw (still percent-escaped) value of path parameter `name` of `route` in `path`."""
        for _, regex, r in self.dynamic:
            if r is route and (match := regex.fullmatch(path)) is not None:
                return match.groupdict().get(name)
        return None
