"""One stored sample (tar members) -> the sample training code wants.

The json member carries the original ``messages`` and the member suffixes of the images or
video frames. Here the ``video`` content item becomes one ``image`` item per frame at the
same place (what the Aria collate step does) and ``images`` holds the pictures in order:
RGB PIL images, or the stored bytes when decoding is left to the caller.
"""

from __future__ import annotations

import io
from typing import Any, Union

import orjson
from PIL import Image

from shardify.reader.stream import RawSample

ImageData = Union[Image.Image, bytes]


class SampleDecodeError(Exception):
    """One sample's members are missing or do not decode."""


def decode_sample(raw: RawSample, *, decode_images: bool = True) -> dict[str, Any]:
    """The training sample of ``raw``; raises SampleDecodeError when it is corrupt."""
    try:
        doc = orjson.loads(raw.members["json"])
    except KeyError:
        raise SampleDecodeError(f"sample {raw.key} has no json member") from None
    except orjson.JSONDecodeError as exc:
        raise SampleDecodeError(f"sample {raw.key}: bad json: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("messages"), list):
        raise SampleDecodeError(f"sample {raw.key}: json is not a shardify sample")
    suffixes, frames = _media_suffixes(doc, raw.key)
    images = _load_images(raw, suffixes, decode_images)
    sample: dict[str, Any] = dict(doc)
    sample["key"] = raw.key
    sample["messages"] = expand_video(doc["messages"], frames) if frames is not None else doc["messages"]
    sample["images"] = images
    return sample


def decode_members(row: dict[str, Any], *, decode_images: bool = True) -> dict[str, Any]:
    """The training sample of a webdataset-style row: ``__key__`` and suffix -> bytes.

    For rows from other readers (plain ``webdataset.WebDataset`` without decoding, Ray
    Data's ``read_webdataset(decoder=None)``); members that are not bytes (Ray fills absent
    columns with NaN) are ignored.
    """
    members = {k: v for k, v in row.items() if not k.startswith("__") and isinstance(v, bytes)}
    raw = RawSample(key=str(row["__key__"]), members=members, shard=str(row.get("__url__", "")), index=-1)
    return decode_sample(raw, decode_images=decode_images)


def _media_suffixes(doc: dict[str, Any], key: str) -> tuple[list[str], Any]:
    """Member suffixes of the pictures in order, and the frame count of a video sample."""
    video = doc.get("video")
    if isinstance(video, dict):
        frames = video.get("frames")
        if not isinstance(frames, list) or not all(isinstance(f, str) for f in frames):
            raise SampleDecodeError(f"sample {key}: video.frames is not a list of member names")
        return list(frames), len(frames)
    images = doc.get("images") or []
    if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
        raise SampleDecodeError(f"sample {key}: images is not a list of member names")
    return list(images), None


def _load_images(raw: RawSample, suffixes: list[str], decode: bool) -> list[ImageData]:
    """The pictures in order; a suffix listed twice (a repeated frame) is decoded once."""
    decoded: dict[str, ImageData] = {}
    out: list[ImageData] = []
    for suffix in suffixes:
        if suffix not in decoded:
            data = raw.members.get(suffix)
            if data is None:
                raise SampleDecodeError(f"sample {raw.key}: member {suffix!r} is missing")
            decoded[suffix] = decode_image(data, f"{raw.key}.{suffix}") if decode else data
        out.append(decoded[suffix])
    return out


def decode_image(data: bytes, where: str) -> Image.Image:
    """Fully decode ``data`` to an RGB PIL image (corruption surfaces here, not later)."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        return image if image.mode == "RGB" else image.convert("RGB")
    except Exception as exc:  # Pillow raises many types for corrupt data
        raise SampleDecodeError(f"{where}: does not decode: {exc}") from None


def expand_video(messages: list[Any], frames: int) -> list[Any]:
    """``messages`` with each ``video`` content item replaced by ``frames`` image items."""
    out = []
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            out.append(message)
            continue
        items: list[Any] = []
        for item in content:
            if isinstance(item, dict) and item.get("type") == "video":
                items.extend({"type": "image", "text": None} for _ in range(frames))
            else:
                items.append(item)
        out.append({**message, "content": items})
    return out
