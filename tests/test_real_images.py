"""The real images of the shared corpus ($SHARDIFY_TEST_MEDIA): each accepted or rejected as
its SOURCES.md / manifest.json entry predicts, through a real build."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import orjson
import pytest

from shardify import build, load_config
from shardify.datagen import chat, image_item
from shardify.media.images import image_extension

pytestmark = [pytest.mark.media]

# Where the corpus says "load ok" but a careful validator must still refuse, and the other
# way round. Everything else follows manifest.json's "load" field.
SPECIAL = {
    # IDAT CRC and IEND missing: Pillow loads it; the PNG chunk walk does not.
    "images/small_png-truncated.png": "unreadable_image",
    # 65535x66601 declared in 44 bytes.
    "images/pillow_decompression_bomb.gif": "image_too_large",
}


def expected_reason(name: str, entry: dict[str, Any], decode: str) -> str | None:
    if name in SPECIAL:
        return None if decode == "header" and SPECIAL[name] == "unreadable_image" else SPECIAL[name]
    if entry.get("format") is None:
        return "unreadable_image"  # Pillow cannot even identify it
    if entry.get("load") == "ok":
        return None
    return None if decode == "header" else "unreadable_image"  # header fine, pixels broken


def build_corpus(media_dir: Path, tmp_path: Path, decode: str) -> tuple[dict[str, Any], list[str], Path]:
    entries = json.loads((media_dir / "manifest.json").read_text())
    names = sorted(n for n in entries if n.startswith("images/"))
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    lines = []
    for name in names:
        shutil.copyfile(media_dir / name, root / name)  # into a temp dataset root, not the repo
        lines.append(orjson.dumps({"messages": chat([image_item()], name), "images": [name]}))
    (root / "train.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / f"out-{decode}"
    build(load_config({"input": str(root), "output": str(out), "executor": {"kind": "local"},
                       "validation": {"decode": decode}}))
    return entries, names, out


@pytest.mark.parametrize("decode", ["full", "header"])
def test_real_images_accepted_or_rejected_as_predicted(media_dir: Path, tmp_path: Path, decode: str) -> None:
    entries, names, out = build_corpus(media_dir, tmp_path, decode)
    rejects = {r["line"]: r for r in map(json.loads, (out / "rejects.jsonl").read_text().splitlines())}
    stored: dict[int, dict[str, bytes]] = {}
    for shard in sorted(out.glob("train-*.tar")):
        with tarfile.open(shard) as tar:
            for member in tar:
                key, _, suffix = member.name.partition(".")
                stored.setdefault(int(key), {})[suffix] = tar.extractfile(member).read()  # type: ignore[union-attr]
    for index, name in enumerate(names):
        want = expected_reason(name, entries[name], decode)
        got = rejects.get(index + 1)
        if want is None:
            assert got is None, f"{name} rejected: {got}"
            members = stored[index]
            doc = orjson.loads(members["json"])
            suffix = doc["images"][0]
            assert suffix == f"image0.{image_extension(entries[name]['format'])}", name
            assert members[suffix] == (media_dir / name).read_bytes(), f"{name} bytes changed"
        else:
            assert got is not None and got["reason"] == want, f"{name}: expected {want}, got {got}"
            assert index not in stored


def test_mislabeled_png_is_stored_as_png(media_dir: Path, tmp_path: Path) -> None:
    _, names, out = build_corpus(media_dir, tmp_path, "full")
    index = names.index("images/MISLABELED_pillow_hopper_is_png.jpg")
    with tarfile.open(next(iter(sorted(out.glob("train-*.tar"))))) as tar:
        members = tar.getnames()
    assert f"{index:09d}.image0.png" in members
