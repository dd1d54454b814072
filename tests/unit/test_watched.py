"""The watched file, as the kubelet updates a mounted ConfigMap or Secret: a `..data` symlink swap."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from proxy.watched import WatchedFile


def kubelet_dir(root: Path, version: str, content: bytes) -> Path:
    """Write `..<version>/value` and point `..data` at it atomically, as the kubelet does."""
    target = root / f"..{version}"
    target.mkdir()
    (target / "value").write_bytes(content)
    tmp = root / "..data_tmp"
    tmp.symlink_to(target.name)
    os.replace(tmp, root / "..data")
    if not (root / "value").exists():
        (root / "value").symlink_to("..data/value")
    return root / "value"


def test_a_symlink_swap_is_seen_and_a_bad_version_keeps_the_last_good(tmp_path: Path) -> None:
    got: list[bytes] = []

    def take(content: bytes) -> None:
        if content == b"bad":
            raise ValueError("is not acceptable")
        got.append(content)

    path = kubelet_dir(tmp_path, "v1", b"one")
    watched = WatchedFile(path, take, what="test")
    watched.load()
    assert got == [b"one"] and not watched.check()  # nothing changed
    kubelet_dir(tmp_path, "v2", b"two")
    assert watched.check() and got == [b"one", b"two"]
    kubelet_dir(tmp_path, "v3", b"bad")
    assert not watched.check() and got == [b"one", b"two"]
    assert watched.last_error == "is not acceptable"
    kubelet_dir(tmp_path, "v4", b"four")
    assert watched.check() and got[-1] == b"four" and watched.last_error is None


def test_an_in_place_write_is_seen_and_a_vanished_file_is_an_error(tmp_path: Path) -> None:
    got: list[bytes] = []
    path = tmp_path / "token"
    path.write_bytes(b"a")
    watched = WatchedFile(path, got.append, what="test")
    watched.load()
    path.write_bytes(b"bb")  # another size: seen even within the same mtime tick
    assert watched.check() and got == [b"a", b"bb"]
    path.unlink()
    assert not watched.check() and "cannot be read" in (watched.last_error or "")


def test_the_first_read_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        WatchedFile(tmp_path / "missing", lambda _c: None, what="test").load()
