"""`python -m proxy.telemetry.reference [--write docs/security-teams.md]`: the access record's field
table, rendered from its definition (`schema.py`), printed or spliced into the page (`make docs`)."""

from __future__ import annotations

import sys
from pathlib import Path

from .schema import markdown, splice


def main(argv: list[str]) -> int:
    if argv[:1] == ["--write"] and len(argv) == 2:
        path = Path(argv[1])
        path.write_text(splice(path.read_text()))
        return 0
    print(markdown())
    return 0


if __name__ == "__main__":  # pragma: no cover - `make docs`
    sys.exit(main(sys.argv[1:]))
