"""A ConfigMap volume as the kubelet writes it: each version in a `..<timestamp>` directory, `..data`
a symlink swapped atomically to the newest, and each key a symlink `KEY -> ..data/KEY`."""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from pathlib import Path

_versions = itertools.count(1)


def kubelet_write(root: Path, files: Mapping[str, str | bytes]) -> Path:
    """Publish a new version of every key at once; returns `root`."""
    root.mkdir(parents=True, exist_ok=True)
    version = root / f"..2026_01_01_00_00_00.{next(_versions):06d}"
    version.mkdir()
    for key, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        (version / key).write_bytes(data)
    tmp = root / "..data_tmp"
    tmp.symlink_to(version.name)
    os.replace(tmp, root / "..data")
    for key in files:
        if not (root / key).is_symlink():
            (root / key).symlink_to(f"..data/{key}")
    return root
