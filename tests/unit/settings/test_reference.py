"""The configuration reference in docs/ is generated from the schema and must not drift from it."""

from __future__ import annotations

from pathlib import Path

from proxy.settings import Settings
from proxy.settings.reference import BEGIN, END, render, rewrite

PAGE = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def test_the_page_holds_exactly_what_the_schema_renders() -> None:
    page = PAGE.read_text(encoding="utf-8")
    assert rewrite(page, render()) == page, "docs/configuration.md is stale: run `make docs`"


def test_every_setting_has_a_row_and_a_meaning() -> None:
    text = render()
    assert text.startswith(BEGIN) and text.endswith(END)
    for name, info in Settings.model_fields.items():
        assert f"| `{name}` |" in text and info.description, name
    for name in ("iap.audiences", "limits.max_body_bytes", "tracing.exporter"):
        assert f"| `{name}` |" in text
