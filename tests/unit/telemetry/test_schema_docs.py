"""docs/security-teams.md and the record's one definition agree: the field table is what the schema
renders (regenerate with `python -m proxy.telemetry.reference --write docs/security-teams.md`), and the
example record there is a valid record."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from proxy.telemetry.schema import BEGIN, END, AccessRecord, markdown, rows, splice

PAGE = Path(__file__).parents[3] / "docs" / "security-teams.md"


def test_the_field_table_is_the_definition() -> None:
    text = PAGE.read_text()
    assert splice(text) == text, "docs/security-teams.md drifted: `make docs` rewrites it"
    table = text.split(BEGIN, 1)[1].split(END, 1)[0]
    assert table.strip() == markdown()
    documented = re.findall(r"^\| `([^`]+)` \|", table, re.M)
    assert documented == [key for key, _, _ in rows()] and "httpRequest.latency" in documented


def test_the_example_record_is_valid() -> None:
    text = PAGE.read_text()
    block = text.split("<!-- example-record", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    AccessRecord.model_validate(json.loads(block))


def test_splice_needs_its_markers() -> None:
    with pytest.raises(ValueError, match="markers"):
        splice("no markers here")
