"""Media lookup in build.py: missing files are explained, with a close match when one exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from shardify.errors import MediaError
from shardify.mediafiles import read_media
from shardify.storage import Location


@pytest.fixture
def root(tmp_path: Path) -> Location:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "red_apple.jpg").write_bytes(b"x")
    return Location(str(tmp_path))


@pytest.mark.parametrize(
    ("path", "suggestion"),
    [("images/red_aple.jpg", "images/red_apple.jpg"),   # typo in the name
     ("image/red_apple.jpg", "images/red_apple.jpg"),   # typo in the folder
     ("images/blue.png", None)],                        # nothing alike
)
def test_missing_file_suggests_a_close_match(root: Location, path: str, suggestion: str | None) -> None:
    with pytest.raises(MediaError) as info:
        read_media(root, path, "images[0]")
    assert info.value.code == "missing_file" and path in info.value.detail
    if suggestion:
        assert info.value.detail.endswith(f"did you mean {suggestion!r}?")
    else:
        assert "did you mean" not in info.value.detail


def test_existing_file_is_read(root: Location) -> None:
    assert read_media(root, "images/red_apple.jpg", "images[0]") == b"x"
