"""Reading a settings document: YAML in, a validated, frozen model out, or `ConfigError` listing every
problem at once, each as `key.path: 'value' what it must be`. Unknown keys and duplicate keys are
errors. Nothing here runs per request."""

from __future__ import annotations

import difflib
import os
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, get_args

import yaml
from annotated_types import Ge, Le
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ..errors import ConfigError
from .schema import Settings

M = TypeVar("M", bound=BaseModel)

# The settings that can grant anything. With none of them set every request would be refused, which is
# an error unless said on purpose (a policy file with no bindings). A new policy source adds its key.
POLICY_SOURCES = ("policy_file", "kubernetes_rbac")

_TYPE_WORDS = {
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
}


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML where a key given twice is an error: a reviewer reads the first `bindings:`, a plain YAML
    reader would obey the second."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(path: Path, key: str, problems: list[str]) -> Any:
    """The document at `path`, or None with a problem naming `key` and the path."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problems.append(f"{key}: {str(path)!r} cannot be read ({exc.strerror or exc})")
        return None
    except UnicodeDecodeError:
        problems.append(f"{key}: {str(path)!r} is not UTF-8 text")
        return None
    return parse_yaml(text, path, key, problems)


def parse_yaml(text: str, path: Path, key: str, problems: list[str]) -> Any:
    """`text` (the content of `path`) as a document, or None with a problem naming `key` and the path."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = str(getattr(exc, "problem", "") or "")
        detail = f": {problem}" if problem else ""
        problems.append(f"{key}: {str(path)!r} is not valid YAML{where}{detail}")
        return None


def validate(
    model: type[M], raw: Any, problems: list[str], context: Mapping[str, Any] | None = None
) -> M | None:
    """`raw` checked against `model`; every problem appended in our words."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        problems.append(f"(top level): {raw!r} must be a mapping")
        return None
    try:
        return model.model_validate(dict(raw), context=dict(context or {}))
    except ValidationError as exc:
        problems += _without_echoes([describe(model, e, raw) for e in exc.errors()])
        return None


_NEAR_MISS = re.compile(r"^(?P<where>.+): unknown key: did you mean (?P<key>\w+)\?$")


def _without_echoes(messages: list[str]) -> list[str]:
    """Drop `tenant: required` when `Tenant: unknown key: did you mean tenant?` already says it."""
    meant = set()
    for message in messages:
        if match := _NEAR_MISS.match(message):
            parent = match["where"].rpartition(".")[0] if "." in match["where"] else ""
            meant.add(f"{parent}.{match['key']}" if parent else match["key"])
    return [m for m in messages if m.partition(": required")[0] not in meant or ": required" not in m]


def key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for i, part in enumerate(loc):
        if part == "[key]" or (i + 1 < len(loc) and loc[i + 1] == "[key]"):
            continue  # a mapping's key is wrong: name the mapping, show the key as the value
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def describe(model: type[BaseModel], error: ErrorDetails, raw: Any = None) -> str:
    """One pydantic error as `key: 'value' why`. `raw` is the document, to suggest a near-miss key."""
    where, kind, value = key_path(error["loc"]), error["type"], error.get("input")
    if kind == "missing":
        return f"{where}: required"
    if kind == "required":
        return f"{where}: required {error['msg']}".rstrip()
    if kind == "extra_forbidden":
        return f"{where}: unknown key{_did_you_mean(model, error['loc'], raw)}"
    if kind in ("greater_than_equal", "less_than_equal"):
        low, high = _bounds(model, error["loc"])
        return f"{where}: {value!r} must be between {low:g} and {high:g}"
    if kind == "literal_error":
        expected = str((error.get("ctx") or {}).get("expected", "")).replace("'", "")
        return f"{where}: {value!r} must be {expected}"
    if kind in _TYPE_WORDS:
        return f"{where}: {value!r} {_TYPE_WORDS[kind]}"
    return f"{where}: {value!r} {error['msg']}"


def _did_you_mean(model: type[BaseModel], loc: tuple[int | str, ...], raw: Any) -> str:
    """`: did you mean policy_file?` for a near miss of a key of the section, one not already given."""
    if not loc or not isinstance(loc[-1], str):
        return ""
    section, given = _section_at(model, loc[:-1]), _mapping_at(raw, loc[:-1])
    if section is None:
        return ""
    names = [name for name in section.model_fields if name not in given]
    close = difflib.get_close_matches(loc[-1], names, n=1, cutoff=0.6)
    if not close and loc[-1].lower() in names:
        close = [loc[-1].lower()]
    return f": did you mean {close[0]}?" if close else ""


def _section_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The section whose keys are at `loc`, through lists, mappings and optional sections."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return None
        if isinstance(part, str) and part in current.model_fields:
            current = _inner_model(current.model_fields[part].annotation)
        # else: an index into a list, or a key of a mapping: the same section goes on
    return current


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _inner_model(tp: Any) -> type[BaseModel] | None:
    """The model inside `tuple[M, ...]`, `M | None`, `dict[str, M]`, `Annotated[M, ...]`, or None."""
    if _is_model(tp):
        return typing.cast(type[BaseModel], tp)
    for arg in typing.get_args(tp):
        if (found := _inner_model(arg)) is not None:
            return found
    return None


def _mapping_at(raw: Any, loc: tuple[int | str, ...]) -> Mapping[Any, Any]:
    for part in loc:
        if isinstance(raw, Mapping) and part in raw:
            raw = raw[part]
        elif isinstance(raw, list | tuple) and isinstance(part, int) and part < len(raw):
            raw = raw[part]
        else:
            return {}
    return raw if isinstance(raw, Mapping) else {}


def _bounds(model: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[float, float]:
    """The range declared for the setting at `loc` (both ends, for a message that gives both)."""
    low, high = float("-inf"), float("inf")
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", {})
        if not isinstance(part, str) or part not in fields:
            break
        info = fields[part]
        for meta in info.metadata:
            if isinstance(meta, Ge):
                low = float(meta.ge)  # type: ignore[arg-type]
            elif isinstance(meta, Le):
                high = float(meta.le)  # type: ignore[arg-type]
        current = next(
            (a for a in (info.annotation, *get_args(info.annotation)) if hasattr(a, "model_fields")), None
        )
    return low, high


def load(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Settings:
    """Read and check a config file and the policy file it names; raise ConfigError listing every
    problem of both."""
    from ..authz.policy_file import read_policy_problems

    env = os.environ if environ is None else environ
    source = Path(path)
    problems: list[str] = []
    raw = read_yaml(source, "config", problems)
    context = {"base": source.parent, "POD_NAMESPACE": env.get("POD_NAMESPACE", "")}
    settings = validate(Settings, raw, problems, context) if raw is not None or not problems else None
    if settings is not None:
        if settings.metrics_listen is not None and settings.metrics_listen.port == settings.listen.port:
            problems.append(
                f"metrics_listen: {str(settings.metrics_listen)!r} must use another port than listen"
            )
        if settings.policy_file is not None:
            problems += read_policy_problems(settings.policy_file)
        elif not any(getattr(settings, key, None) for key in POLICY_SOURCES):
            problems.append(
                "policy_file: required: without a policy (or kubernetes_rbac) every request is refused "
                "(to refuse every request on purpose, name a policy file with no bindings)"
            )
    if problems or settings is None:
        raise ConfigError(problems)
    return settings
