"""One JSONL line -> a typed :class:`SampleRecord`, or a :class:`RejectRecord` with its code.

Pure functions: no file system access here (existence, symlinks and decoding are checked
by the build, which owns the dataset root). The checks follow CONTRACT.md §1 and the reject
codes of §4, in this order: JSON, schema, images+video, counts, num_frames, paths.
"""

from __future__ import annotations

import difflib
import json
import posixpath
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import orjson

from shardify.config import DEFAULT_NUM_FRAMES
from shardify.rejects import (
    BAD_NUM_FRAMES,
    IMAGE_COUNT_MISMATCH,
    IMAGES_AND_VIDEO,
    INVALID_JSON,
    INVALID_SCHEMA,
    PATH_OUTSIDE_ROOT,
    REJECT_CODES,  # noqa: F401 - re-exported: callers of schema name the codes from here too
    VIDEO_COUNT_MISMATCH,
)

ROLES = ("user", "assistant")
CONTENT_TYPES = ("text", "image", "video")
BOM = b"\xef\xbb\xbf"
KEY_DIGITS = 9

_URL_SCHEMES = ("data:", "file:", "http:", "https:", "ftp:", "s3:", "gs:", "gcs:", "az:", "abfs:", "hf:")


def sample_key(index: int) -> str:
    """The WebDataset key of the line with 0-based ``index``: 9 digits, no dots."""
    if index < 0:
        raise ValueError(f"line index must be >= 0, got {index}")
    return f"{index:0{KEY_DIGITS}d}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RejectRecord:
    """One line of rejects.jsonl."""

    split: str
    line: int
    reason: str
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"split": self.split, "line": self.line, "reason": self.reason, "detail": self.detail}


WarningRecord = RejectRecord
"""One line of warnings.jsonl: the same shape as a reject (split, line, reason, detail)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SampleRecord:
    """A line that passed the schema checks; media are still to be checked."""

    split: str
    file: str
    index: int
    data: dict[str, Any]
    image_paths: tuple[str, ...] = ()
    video_path: Optional[str] = None
    num_frames: Optional[int] = None
    num_frames_defaulted: bool = False
    media: tuple[str, ...] = field(default=())
    """Normalised root-relative paths of every referenced file, in order."""

    @property
    def key(self) -> str:
        return sample_key(self.index)

    @property
    def line(self) -> int:
        return self.index + 1


class _RejectError(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def is_blank(raw: bytes) -> bool:
    """True for an empty or whitespace-only line (counted as blank, never rejected)."""
    return not raw.strip()


def parse_line(
    raw: bytes, *, split: str, file: str, index: int, max_num_frames: int
) -> Union[SampleRecord, RejectRecord]:
    """Check one non-blank line. Never raises: every problem becomes a RejectRecord."""
    try:
        data = _decode(raw, first=index == 0)
        return _check(data, split=split, file=file, index=index, max_num_frames=max_num_frames)
    except _RejectError as rej:
        return RejectRecord(split=split, line=index + 1, reason=rej.code, detail=rej.detail)


def _decode(raw: bytes, *, first: bool) -> dict[str, Any]:
    if first and raw.startswith(BOM):
        raw = raw[len(BOM) :]
    raw = raw.rstrip(b"\r\n")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _RejectError(
            INVALID_JSON,
            f"not UTF-8: byte 0x{raw[exc.start]:02x} at column {exc.start + 1}; "
            "save the file as UTF-8",
        ) from None
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise _RejectError(INVALID_JSON, describe_json_error(text)) from None
    if not isinstance(data, dict):
        raise _RejectError(
            INVALID_JSON, f"the line is a JSON {_type_name(data)}, expected an object {{...}}"
        )
    return data


def describe_json_error(text: str) -> str:
    """Say what is wrong with a JSON text in words a user can act on."""
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        col = exc.colno
        before = text[: exc.pos].rstrip()
        if before.endswith(",") and text[exc.pos : exc.pos + 1] in ("}", "]"):
            return f"trailing comma at column {len(before)}"
        if exc.msg.startswith("Unterminated string"):
            return f"unterminated string starting at column {col}"
        if exc.msg == "Expecting value" and exc.pos >= len(text.rstrip()):
            return f"the line ends early at column {col} (truncated JSON?)"
        return f"{exc.msg} at column {col}"
    except RecursionError:
        return "JSON nested too deeply"
    return "not valid JSON (NaN, Infinity or a number out of range?)"


def _check(
    data: dict[str, Any], *, split: str, file: str, index: int, max_num_frames: int
) -> SampleRecord:
    counts = _check_messages(data.get("messages"))
    images = _check_images_field(data)
    video = _check_video_field(data)
    if images is not None and video is not None:
        raise _RejectError(IMAGES_AND_VIDEO, "the sample has both 'images' and 'video'; keep one")
    n_images = len(images or ())
    if n_images != counts["image"]:
        raise _RejectError(
            IMAGE_COUNT_MISMATCH,
            f"'images' lists {n_images} path(s) but the messages have {counts['image']} "
            "image item(s); give one path per image item, in order" + _misspelt(data, "images"),
        )
    _check_video_count(video, counts["video"], data)
    num_frames, defaulted = (None, False)
    if video is not None:
        num_frames, defaulted = _check_num_frames(video, max_num_frames)
    image_paths = tuple(_check_path(p, f"images[{i}]") for i, p in enumerate(images or ()))
    video_path = _check_path(video["path"], "video.path") if video is not None else None
    media = image_paths + ((video_path,) if video_path else ())
    return SampleRecord(
        split=split, file=file, index=index, data=data, image_paths=image_paths,
        video_path=video_path, num_frames=num_frames, num_frames_defaulted=defaulted,
        media=media,
    )  # fmt: skip


def _check_messages(messages: Any) -> dict[str, int]:
    if messages is None:
        raise _RejectError(INVALID_SCHEMA, "missing 'messages' (a list of {role, content})")
    if not isinstance(messages, list) or not messages:
        raise _RejectError(INVALID_SCHEMA, f"'messages' must be a non-empty list, got {_show(messages)}")
    counts = {t: 0 for t in CONTENT_TYPES}
    for m, message in enumerate(messages):
        where = f"messages[{m}]"
        if not isinstance(message, dict):
            raise _RejectError(INVALID_SCHEMA, f"{where} must be an object, got {_show(message)}")
        role = message.get("role")
        if role not in ROLES:
            raise _RejectError(INVALID_SCHEMA, f"{where}.role is {_show(role)}; use 'user' or 'assistant'")
        content = message.get("content")
        if not isinstance(content, list):
            raise _RejectError(
                INVALID_SCHEMA, f"{where}.content must be a list of items, got {_show(content)}"
            )
        for c, item in enumerate(content):
            counts[_check_item(item, f"{where}.content[{c}]")] += 1
    return counts


def _check_item(item: Any, where: str) -> str:
    if not isinstance(item, dict):
        raise _RejectError(INVALID_SCHEMA, f"{where} must be an object, got {_show(item)}")
    kind = item.get("type")
    if kind not in CONTENT_TYPES:
        raise _RejectError(
            INVALID_SCHEMA, f"{where}.type is {_show(kind)}; use 'text', 'image' or 'video'"
        )
    text = item.get("text")
    if kind == "text" and not isinstance(text, str):
        raise _RejectError(INVALID_SCHEMA, f"{where} is a text item but its 'text' is {_show(text)}")
    if kind != "text" and text is not None:
        raise _RejectError(
            INVALID_SCHEMA, f"{where} is an {kind} item with a 'text'; set it to null or remove it"
        )
    return str(kind)


def _check_images_field(data: dict[str, Any]) -> Optional[list[Any]]:
    images = data.get("images")
    if images is None:
        return None
    if not isinstance(images, list):
        raise _RejectError(INVALID_SCHEMA, f"'images' must be a list of paths, got {_show(images)}")
    for i, path in enumerate(images):
        if not isinstance(path, str):
            raise _RejectError(INVALID_SCHEMA, f"images[{i}] must be a path string, got {_show(path)}")
    return images


def _check_video_field(data: dict[str, Any]) -> Optional[dict[str, Any]]:
    video = data.get("video")
    if video is None:
        return None
    if not isinstance(video, dict):
        raise _RejectError(INVALID_SCHEMA, f"'video' must be {{path, num_frames}}, got {_show(video)}")
    if not isinstance(video.get("path"), str):
        raise _RejectError(INVALID_SCHEMA, f"video.path must be a path string, got {_show(video.get('path'))}")
    return video


def _check_video_count(video: Optional[dict[str, Any]], items: int, data: dict[str, Any]) -> None:
    if video is not None and items != 1:
        raise _RejectError(
            VIDEO_COUNT_MISMATCH,
            f"the sample has a 'video' but {items} video items; it needs exactly one",
        )
    if video is None and items:
        raise _RejectError(
            VIDEO_COUNT_MISMATCH,
            f"the messages have {items} video item(s) but there is no 'video' {{path, num_frames}}"
            + _misspelt(data, "video"),
        )


def _check_num_frames(video: dict[str, Any], max_num_frames: int) -> tuple[int, bool]:
    value = video.get("num_frames")
    if value is None:
        return DEFAULT_NUM_FRAMES, True
    if isinstance(value, bool) or not isinstance(value, int):
        raise _RejectError(
            BAD_NUM_FRAMES, f"video.num_frames must be an integer, got {_show(value)}"
        )
    if value <= 0:
        return DEFAULT_NUM_FRAMES, True
    if value > max_num_frames:
        raise _RejectError(
            BAD_NUM_FRAMES,
            f"video.num_frames is {value}, above video.max_num_frames={max_num_frames}; "
            "lower it or raise the limit in the config",
        )
    return value, False


def _check_path(path: str, where: str) -> str:
    """Normalise a root-relative media path, or reject it."""
    if not path or "\x00" in path:
        raise _RejectError(INVALID_SCHEMA, f"{where} is an empty or malformed path {_show(path)}")
    if "://" in path or path.lower().startswith(_URL_SCHEMES):
        raise _RejectError(PATH_OUTSIDE_ROOT, f"{where} {quote(path)} is a URL; use a path relative to the dataset root")
    if path.startswith(("/", "\\")) or _is_windows_drive(path):
        raise _RejectError(PATH_OUTSIDE_ROOT, f"{where} {quote(path)} is absolute; use a path relative to the dataset root")
    norm = posixpath.normpath(path)
    if norm == ".." or norm.startswith("../") or norm == ".":
        raise _RejectError(PATH_OUTSIDE_ROOT, f"{where} {quote(path)} leaves the dataset root")
    return norm


def _is_windows_drive(path: str) -> bool:
    return len(path) >= 2 and path[1] == ":" and path[0].isalpha() and (len(path) == 2 or path[2] in "/\\")


def _type_name(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def _show(value: Any) -> str:
    text = orjson.dumps(value).decode() if _is_json(value) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_json(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:
        return False
    return True


def _misspelt(data: dict[str, Any], key: str) -> str:
    """``"; the line has 'imgaes': a misspelt 'images'?"`` when a key close to ``key`` is there."""
    if key in data:
        return ""
    close = difflib.get_close_matches(key, [k for k in data if isinstance(k, str)], n=1, cutoff=0.7)
    return f"; the line has {close[0]!r}: a misspelt {key!r}?" if close else ""


def quote(text: str) -> str:
    """``'images\\a.jpg'`` shown as the user typed it: quoted, backslashes not doubled
    (control characters and quotes still escaped, as ``repr`` does)."""
    if text.isprintable() and "'" not in text:
        return f"'{text}'"
    return repr(text)
