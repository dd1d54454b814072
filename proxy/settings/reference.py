"""The configuration reference in docs/configuration.md, rendered from the schema: one table per
section, a row per setting (key, default, range, meaning). `make docs` rewrites the part between the
markers; a test fails when the page is stale.

    python -m proxy.settings.reference [--write docs/configuration.md]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import get_args

from annotated_types import Ge, Le
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from .schema import Settings

BEGIN = "<!-- BEGIN GENERATED: settings reference (make docs) -->"
END = "<!-- END GENERATED -->"


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _default(info: FieldInfo) -> str:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if "x-default-shown" in extra:
        return f"`{extra['x-default-shown']}`"
    value = info.default
    if value is PydanticUndefined:
        return "— (required)"
    if value is None:
        return "none"
    if isinstance(value, BaseModel):
        return "see below"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int | float):
        return _number(value)
    return f"`{value}`"


def _range(info: FieldInfo) -> str:
    low = next((m.ge for m in info.metadata if isinstance(m, Ge)), None)
    high = next((m.le for m in info.metadata if isinstance(m, Le)), None)
    if low is None and high is None:
        return ""
    return f"{_number(low) if low is not None else '…'} – {_number(high) if high is not None else '…'}"  # type: ignore[arg-type]


def _is_model(annotation: object) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _sections(model: type[BaseModel], prefix: str = "") -> list[tuple[str, type[BaseModel]]]:
    found = [(prefix, model)]
    for name, info in model.model_fields.items():
        sub = next((a for a in (info.annotation, *get_args(info.annotation)) if _is_model(a)), None)
        if sub is not None:
            found += _sections(sub, f"{prefix}{name}.")
    return found


def render(model: type[BaseModel] = Settings) -> str:
    out: list[str] = [BEGIN, ""]
    for prefix, section in _sections(model):
        title = f"`{prefix.rstrip('.')}`" if prefix else "Top level"
        out += [f"### {title}", ""]
        doc = (section.__doc__ or "").strip().splitlines()[0] if section.__doc__ else ""
        if doc:
            out += [doc, ""]
        out += ["| key | default | range | meaning |", "|---|---|---|---|"]
        for name, info in section.model_fields.items():
            meaning = (info.description or "").replace("|", "\\|")
            out.append(f"| `{prefix}{name}` | {_default(info)} | {_range(info)} | {meaning} |")
        out.append("")
    out.append(END)
    return "\n".join(out)


def rewrite(page: str, generated: str) -> str:
    """`page` with the part between the markers replaced by `generated`."""
    start, end = page.index(BEGIN), page.index(END) + len(END)
    return page[:start] + generated + page[end:]


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--write", type=Path, help="rewrite this page's generated part in place")
    ns = args.parse_args(argv)
    if ns.write is None:
        print(render())
        return 0
    page = ns.write.read_text(encoding="utf-8")
    ns.write.write_text(rewrite(page, render()), encoding="utf-8")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
