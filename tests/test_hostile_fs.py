"""Hostile filesystem states, one per line: every one is a verdict on its line, never a
failed build, and nothing is lost (samples + rejected + blank == lines).

The states are made by the test itself: symlink loops, 300-byte names, paths past PATH_MAX,
directories, dangling links, links to /dev/zero, FIFOs, sockets, sparse multi-GB files,
trailing slashes, backslashes, zero-width and newline characters in names.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any, Iterator

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from shardify.config import load_config
from shardify.errors import MediaError
from shardify.manifest import read_rejects
from shardify.mediafiles import read_media, resolve_media
from shardify.pipeline import build, validate
from shardify.storage import Location
from tests.conftest import run_cli, write_config

IMG = {"type": "image", "text": None}


def image_line(path: str) -> str:
    messages = [{"role": "user", "content": [IMG, {"type": "text", "text": "what?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "this"}]}]  # fmt: skip
    return json.dumps({"messages": messages, "images": [path]})


def video_line(path: str) -> str:
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "that"}]}]  # fmt: skip
    return json.dumps({"messages": messages, "video": {"path": path, "num_frames": 4}})


def hostile_root(root: Path) -> dict[str, tuple[str, set[str]]]:
    """Make the states under ``root``; name -> (JSONL line, acceptable verdicts)."""
    img = root / "img"
    img.mkdir(parents=True)
    Image.new("RGB", (8, 8), (200, 10, 10)).save(img / "ok.jpg")
    os.symlink("loop_b.jpg", img / "loop_a.jpg")
    os.symlink("loop_a.jpg", img / "loop_b.jpg")
    os.symlink("nowhere.jpg", img / "dangling.jpg")
    os.symlink("/dev/zero", img / "zero.jpg")
    (img / "dir.jpg").mkdir()
    os.mkfifo(img / "fifo.jpg")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(img / "sock.jpg"))
    sock.close()  # the socket file stays
    with open(img / "huge.jpg", "wb") as handle:  # sparse: 6 GiB of nothing on disk
        handle.truncate(6 << 30)
    with open(img / "huge.mp4", "wb") as handle:
        handle.truncate(6 << 30)
    os.symlink("loop_b.mp4", img / "loop_a.mp4")
    os.symlink("loop_a.mp4", img / "loop_b.mp4")
    Image.new("RGB", (8, 8)).save(img / "new\nline.png")
    Image.new("RGB", (8, 8)).save(img / "zero\u200bwidth.png")
    long_name = "n" * 300 + ".jpg"
    past_path_max = "/".join(["d" * 200] * 25) + "/x.jpg"  # > 4096 bytes
    unreadable = {"unreadable_file"}
    return {
        "ok": (image_line("img/ok.jpg"), {"ok"}),
        "loop": (image_line("img/loop_a.jpg"), unreadable),
        "long_name": (image_line(f"img/{long_name}"), unreadable),
        "past_path_max": (image_line(past_path_max), unreadable),
        "dangling": (image_line("img/dangling.jpg"), {"missing_file"}),
        "dev_zero": (image_line("img/zero.jpg"), {"path_outside_root"}),
        "directory": (image_line("img/dir.jpg"), {"missing_file"}),
        "fifo": (image_line("img/fifo.jpg"), unreadable),
        "socket": (image_line("img/sock.jpg"), unreadable),
        "sparse_6g_jpg": (image_line("img/huge.jpg"), {"file_too_large"}),
        "sparse_6g_mp4": (video_line("img/huge.mp4"), {"unreadable_video", "file_too_large"}),
        "video_loop": (video_line("img/loop_a.mp4"), unreadable),
        "trailing_slash": (image_line("img/ok.jpg/"), {"ok", "missing_file", "unreadable_file"}),
        "backslash": (image_line("img\\ok.jpg"), {"missing_file"}),
        "newline_name": (image_line("img/new\nline.png"), {"ok"}),
        "zero_width_name": (image_line("img/zero\u200bwidth.png"), {"ok"}),
        "zero_width_missing": (image_line("img/o\u200bk.jpg"), {"missing_file"}),
    }


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, set[str]]]:
    """A dataset with one line per state; name -> acceptable verdicts, in line order."""
    root = tmp_path_factory.mktemp("hostile") / "ds"
    states = hostile_root(root)
    (root / "train.jsonl").write_text("".join(line + "\n" for line, _ in states.values()), encoding="utf-8")
    return root, {name: ok for name, (_, ok) in states.items()}


def verdicts(out: Path, names: list[str]) -> dict[str, str]:
    rejects = {r["line"]: r for r in read_rejects(Location(str(out)))}
    return {name: rejects[i + 1]["reason"] if i + 1 in rejects else "ok" for i, name in enumerate(names)}


def check_verdicts(out: Path, states: dict[str, set[str]], manifest: Any) -> None:
    names = list(states)
    got = verdicts(out, names)
    for name in names:
        assert got[name] in states[name], f"{name}: got {got[name]}, expected one of {states[name]}"
    info = manifest if isinstance(manifest, dict) else manifest.to_json()
    info = info["splits"]["train"]
    assert info["samples"] + info["rejected"] + info["blank"] == info["lines"] == len(names)
    for reject in read_rejects(Location(str(out))):
        assert reject["detail"] and len(reject["detail"]) < 600  # said in words, never a dump


@pytest.mark.parametrize("command", ["build", "validate"])
def test_hostile_states_each_get_a_verdict_local(tmp_path: Path, hostile: tuple[Path, dict[str, set[str]]],
                                                 command: str) -> None:  # fmt: skip
    root, states = hostile
    out = tmp_path / "out"
    config = load_config({"input": str(root), "output": str(out), "executor": {"kind": "local"},
                          "video": {"timeout_s": 20}})  # fmt: skip
    report = (build if command == "build" else validate)(config)
    check_verdicts(out, states, report.manifest)


def test_a_huge_sparse_image_is_rejected_without_reading_it(tmp_path: Path) -> None:
    """6 GiB on the file system, nothing on disk: the fstat says no before any read."""
    (tmp_path / "huge.jpg").touch()
    os.truncate(tmp_path / "huge.jpg", 6 << 30)
    with pytest.raises(MediaError) as info:
        read_media(Location(str(tmp_path)), "huge.jpg", "images[0]", max_bytes=256 << 20)
    assert info.value.code == "file_too_large" and "6.0 GiB" in info.value.detail


def test_file_that_changes_size_while_read_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "grow.jpg"
    path.write_bytes(b"x" * 100)
    real_fstat = os.fstat

    def stale_fstat(fd: int) -> os.stat_result:  # the file grew between fstat and read
        st = real_fstat(fd)
        return os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid,
                               50, st.st_atime, st.st_mtime, st.st_ctime))  # fmt: skip

    monkeypatch.setattr(os, "fstat", stale_fstat)
    with pytest.raises(MediaError) as info:
        read_media(Location(str(tmp_path)), "grow.jpg", "images[0]")
    assert info.value.code == "unreadable_file" and "changed size" in info.value.detail


def test_a_store_error_still_stops_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EIO is about the disk, not the sample: it must fail loudly, not become a reject."""
    import errno

    from shardify.errors import StorageError

    (tmp_path / "a.jpg").write_bytes(b"x")

    def broken_open(*args: Any, **kwargs: Any) -> int:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "open", broken_open)
    with pytest.raises(StorageError, match="Input/output error"):
        read_media(Location(str(tmp_path)), "a.jpg", "images[0]")


_NAMES = st.text(alphabet=st.sampled_from(list("ab./\\\n\u200b\x01 ~é")), min_size=1, max_size=40)


@pytest.fixture(scope="module")
def playground(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Location]:
    root = tmp_path_factory.mktemp("play")
    (root / "a").mkdir()
    (root / "a" / "b").write_bytes(b"data")
    os.symlink("b", root / "a" / "l")
    os.symlink("..", root / "a" / "up")
    os.symlink("loop", root / "loop")
    os.mkfifo(root / "a" / "f")
    yield Location(str(root))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=_NAMES)
def test_any_path_string_gives_bytes_or_a_verdict(playground: Location, path: str) -> None:
    """Whatever the string, read_media and resolve_media return or raise MediaError: never
    an OSError, StorageError or a hang (paths go through the schema's normalisation first)."""
    from shardify.schema import SampleRecord, parse_line

    parsed = parse_line(orjson.dumps(orjson.loads(image_line(path))), split="train", file="train.jsonl",
                        index=0, max_num_frames=8)  # fmt: skip
    if not isinstance(parsed, SampleRecord):
        return
    for check in (read_media, resolve_media):
        try:
            check(playground, parsed.image_paths[0], "images[0]")
        except MediaError as exc:
            assert exc.code in {"missing_file", "unreadable_file", "path_outside_root", "file_too_large"}


@pytest.mark.ray
@pytest.mark.slow
def test_hostile_states_each_get_a_verdict_ray_cli(tmp_path: Path, hostile: tuple[Path, dict[str, set[str]]]) -> None:
    root, states = hostile
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "cfg.yaml", input=str(root), output=str(out),
                       executor={"num_cpus": 2}, video={"timeout_s": 20})  # fmt: skip
    result = run_cli("build", str(cfg))
    assert result.returncode == 0, result.stderr
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    check_verdicts(out, states, manifest)
