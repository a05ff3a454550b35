"""Deterministic tar members, read back with tarfile and webdataset."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest
import webdataset as wds
from hypothesis import given
from hypothesis import strategies as st

from shardify.schema import sample_key
from shardify.tarwriter import TarShardWriter, member_name, split_member_name


def write(members: list[tuple[str, bytes]]) -> tuple[bytes, int, str]:
    out = io.BytesIO()
    writer = TarShardWriter(out)
    for name, data in members:
        writer.add(name, data)
    size, digest = writer.close()
    return out.getvalue(), size, digest


MEMBERS = [("000000000.json", b'{"a": 1}'), ("000000000.image0.jpg", b"\xff\xd8jpeg"),
           ("000000003.json", b"{}")]


def test_members_have_fixed_metadata_and_order() -> None:
    data, size, digest = write(MEMBERS)
    assert size == len(data) and digest == hashlib.sha256(data).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        infos = tar.getmembers()
        assert [i.name for i in infos] == [n for n, _ in MEMBERS]
        for info in infos:
            assert (info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode) == (0, 0, 0, "", "", 0o644)
        assert tar.extractfile("000000000.image0.jpg").read() == b"\xff\xd8jpeg"  # type: ignore[union-attr]


def test_same_members_same_bytes() -> None:
    assert write(MEMBERS) == write(MEMBERS)


def test_duplicate_member_is_refused() -> None:
    out = io.BytesIO()
    writer = TarShardWriter(out)
    writer.add("000000000.json", b"{}")
    with pytest.raises(ValueError):
        writer.add("000000000.json", b"{}")


@given(st.integers(0, 10**9 - 1), st.sampled_from(["json", "image0.jpg", "image12.png", "frame0007.jpg"]))
def test_member_names_split_at_the_first_dot(index: int, suffix: str) -> None:
    name = member_name(sample_key(index), suffix)
    key, _, rest = name.partition(".")
    assert key == sample_key(index) and rest == suffix
    assert split_member_name(name) == (key, suffix)


def test_keys_with_dots_are_refused() -> None:
    with pytest.raises(ValueError):
        member_name("a.b", "json")


def test_webdataset_groups_our_members(tmp_path: Path) -> None:
    data, _, _ = write(MEMBERS)
    (tmp_path / "s.tar").write_bytes(data)
    samples = list(wds.WebDataset(str(tmp_path / "s.tar"), shardshuffle=False))
    assert [s["__key__"] for s in samples] == ["000000000", "000000003"]
    assert samples[0]["image0.jpg"] == b"\xff\xd8jpeg"


@given(st.text(min_size=1, max_size=120), st.integers(min_value=0, max_value=8**11 + 5))
def test_member_header_is_tarfiles_header(name: str, size: int) -> None:
    from shardify.tarwriter import _tarinfo_header, member_header

    try:
        expected: object = _tarinfo_header(name, size)
    except ValueError as exc:  # too long to split, or too big for USTAR: the same error
        expected = str(exc)
    try:
        got: object = member_header(name, size)
    except ValueError as exc:
        got = str(exc)
    assert got == expected
