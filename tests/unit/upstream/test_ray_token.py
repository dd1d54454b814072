"""Ray's token: read at start, empty refused, a rotation picked up by the watcher."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.upstream.ray_token import RayToken


def test_rotation_is_picked_up_and_an_empty_file_keeps_the_old_token(tmp_path: Path) -> None:
    path = tmp_path / "tok"
    path.write_text("abc\n")
    token = RayToken(path)
    token.load()
    assert token.value == "abc" and token.problem is None
    path.write_text("rotated-token")
    assert token.watch is not None and token.watch.check()
    assert token.value == "rotated-token"
    path.write_text("")
    assert not token.watch.check()
    assert token.value == "rotated-token" and token.problem == "is empty"


def test_an_empty_file_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("  \n")
    with pytest.raises(ValueError, match="is empty"):
        RayToken(tmp_path / "tok").load()


def test_no_file_means_no_token() -> None:
    token = RayToken(None)
    token.load()
    assert token.value is None and token.problem is None
