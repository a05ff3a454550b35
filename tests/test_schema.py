"""One JSONL line -> record or reject: every schema-level reject code, and fuzzing."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shardify.schema import (
    REJECT_CODES,
    RejectRecord,
    SampleRecord,
    describe_json_error,
    is_blank,
    parse_line,
    sample_key,
)


def parse(obj: object | bytes, index: int = 4, max_num_frames: int = 64) -> SampleRecord | RejectRecord:
    raw = obj if isinstance(obj, bytes) else orjson.dumps(obj)
    return parse_line(raw, split="train", file="train.jsonl", index=index, max_num_frames=max_num_frames)


def msgs(*items: dict[str, object]) -> list[dict[str, object]]:
    return [{"role": "user", "content": list(items)},
            {"role": "assistant", "content": [{"type": "text", "text": "ok"}]}]


IMG = {"type": "image", "text": None}
VID = {"type": "video"}
TXT = {"type": "text", "text": "hi"}


def reject_of(obj: object | bytes) -> RejectRecord:
    result = parse(obj)
    assert isinstance(result, RejectRecord), result
    assert result.line == 5 and result.split == "train"
    return result


def test_image_sample_is_accepted_with_normalised_paths() -> None:
    record = parse({"messages": msgs(IMG, TXT, IMG), "images": ["a/./x.jpg", "b.png"]})
    assert isinstance(record, SampleRecord)
    assert record.image_paths == ("a/x.jpg", "b.png")
    assert record.key == "000000004" and record.line == 5
    assert record.media == ("a/x.jpg", "b.png")


def test_text_only_sample_is_valid() -> None:
    assert isinstance(parse({"messages": msgs(TXT)}), SampleRecord)


@pytest.mark.parametrize(
    ("obj", "code", "words"),
    [
        (b'{"messages": [1,],}', "invalid_json", "trailing comma at column 16"),
        (b'{"messages": "x"', "invalid_json", "column"),
        (b"[1, 2]", "invalid_json", "array"),
        (b'"text"', "invalid_json", "string"),
        (b'{"messages": "\xff"}', "invalid_json", "not UTF-8"),
        ({"images": []}, "invalid_schema", "missing 'messages'"),
        ({"messages": []}, "invalid_schema", "non-empty list"),
        ({"messages": [{"role": "system", "content": [TXT]}]}, "invalid_schema", "messages[0].role"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "invalid_schema", "content must be a list"),
        ({"messages": msgs({"type": "audio"})}, "invalid_schema", "messages[0].content[0].type"),
        ({"messages": msgs({"type": "text", "text": None})}, "invalid_schema", "text item"),
        ({"messages": msgs({"type": "image", "text": "x"}), "images": ["a.jpg"]}, "invalid_schema", "set it to null"),
        ({"messages": msgs(IMG), "images": "a.jpg"}, "invalid_schema", "'images' must be a list"),
        ({"messages": msgs(IMG), "images": [3]}, "invalid_schema", "images[0]"),
        ({"messages": msgs(VID), "video": "v.mp4"}, "invalid_schema", "'video' must be"),
        ({"messages": msgs(IMG), "images": [""]}, "invalid_schema", "empty"),
        ({"messages": msgs(IMG, VID), "images": ["a.jpg"], "video": {"path": "v.mp4"}}, "images_and_video", "both"),
        ({"messages": msgs(IMG, IMG), "images": ["a.jpg"]}, "image_count_mismatch", "1 path(s) but the messages have 2"),
        ({"messages": msgs(IMG)}, "image_count_mismatch", "0 path(s)"),
        ({"messages": msgs(VID, VID), "video": {"path": "v.mp4"}}, "video_count_mismatch", "2 video items"),
        ({"messages": msgs(TXT), "video": {"path": "v.mp4"}}, "video_count_mismatch", "0 video items"),
        ({"messages": msgs(VID)}, "video_count_mismatch", "no 'video'"),
        ({"messages": msgs(VID), "video": {"path": "v.mp4", "num_frames": True}}, "bad_num_frames", "true"),
        ({"messages": msgs(VID), "video": {"path": "v.mp4", "num_frames": 8.0}}, "bad_num_frames", "8.0"),
        ({"messages": msgs(VID), "video": {"path": "v.mp4", "num_frames": "8"}}, "bad_num_frames", '"8"'),
        ({"messages": msgs(VID), "video": {"path": "v.mp4", "num_frames": 65}}, "bad_num_frames", "max_num_frames=64"),
        ({"messages": msgs(IMG), "images": ["/etc/passwd"]}, "path_outside_root", "absolute"),
        ({"messages": msgs(IMG), "images": ["../x.jpg"]}, "path_outside_root", "leaves"),
        ({"messages": msgs(IMG), "images": ["a/../../x.jpg"]}, "path_outside_root", "leaves"),
        ({"messages": msgs(IMG), "images": ["s3://b/x.jpg"]}, "path_outside_root", "URL"),
        ({"messages": msgs(IMG), "images": ["https://x/y.jpg"]}, "path_outside_root", "URL"),
        ({"messages": msgs(IMG), "images": ["C:\\x.jpg"]}, "path_outside_root", "absolute"),
        ({"messages": msgs(VID), "video": {"path": "../v.mp4"}}, "path_outside_root", "video.path"),
    ],
)
def test_rejects_name_the_problem(obj: object, code: str, words: str) -> None:
    reject = reject_of(obj)
    assert reject.reason == code
    assert words in reject.detail, reject.detail


@pytest.mark.parametrize("value", [None, 0, -3])
def test_missing_or_non_positive_num_frames_becomes_8_with_a_warning(value: object) -> None:
    video: dict[str, object] = {"path": "v.mp4"}
    if value is not None:
        video["num_frames"] = value
    record = parse({"messages": msgs(VID), "video": video})
    assert isinstance(record, SampleRecord)
    assert record.num_frames == 8 and record.num_frames_defaulted
    assert record.video_path == "v.mp4"


def test_explicit_num_frames_is_kept() -> None:
    record = parse({"messages": msgs(VID), "video": {"path": "v.mp4", "num_frames": 64}})
    assert isinstance(record, SampleRecord) and record.num_frames == 64 and not record.num_frames_defaulted


def test_bom_on_first_line_and_crlf_are_accepted() -> None:
    raw = b"\xef\xbb\xbf" + orjson.dumps({"messages": msgs(TXT)}) + b"\r\n"
    assert isinstance(parse(raw, index=0), SampleRecord)


def test_blank_lines() -> None:
    assert is_blank(b"\n") and is_blank(b"  \r\n") and is_blank(b"")
    assert not is_blank(b"{}\n")


def test_keys_are_nine_digits_without_dots() -> None:
    assert sample_key(0) == "000000000"
    assert sample_key(42) == "000000042"
    with pytest.raises(ValueError):
        sample_key(-1)


@given(st.integers(min_value=0, max_value=10**9 - 1))
def test_keys_sort_like_line_numbers(index: int) -> None:
    key = sample_key(index)
    assert len(key) == 9 and "." not in key and int(key) == index


def test_describe_json_error_points_at_the_column() -> None:
    assert describe_json_error('{"a": 1,}') == "trailing comma at column 8"
    assert "truncated" in describe_json_error('{"a": ')
    assert "unterminated string" in describe_json_error('{"a": "b')


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["messages", "images", "video", "role", "content", "type", "text",
                         "path", "num_frames", "x"]), children, max_size=5),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_fuzz_json_values_never_crash(value: object) -> None:
    result = parse(json.dumps(value).encode())
    assert isinstance(result, (SampleRecord, RejectRecord))
    if isinstance(result, RejectRecord):
        assert result.reason in REJECT_CODES and result.detail


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_garbled_bytes_never_crash(raw: bytes) -> None:
    result = parse(raw.replace(b"\n", b" "))
    assert isinstance(result, (SampleRecord, RejectRecord))
    if isinstance(result, RejectRecord):
        assert result.reason in REJECT_CODES and result.detail


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=200), st.data())
def test_fuzz_truncated_valid_lines_are_invalid_json(cut: int, data: st.DataObject) -> None:
    raw = orjson.dumps({"messages": msgs(IMG, TXT), "images": ["a.jpg"]})
    cut = min(cut, len(raw) - 1)
    result = parse(raw[:cut])
    assert isinstance(result, RejectRecord) and result.reason == "invalid_json"


@pytest.mark.parametrize(("line", "words"), [
    ({"messages": [{"role": "user", "content": [{"type": "image"}]}], "imgaes": ["a.jpg"]},
     "the line has 'imgaes': a misspelt 'images'?"),
    ({"messages": [{"role": "user", "content": [{"type": "video"}]}], "vidoe": {"path": "a.mp4"}},
     "the line has 'vidoe': a misspelt 'video'?"),
])
def test_a_misspelt_media_key_is_named(line: dict[str, object], words: str) -> None:
    import orjson

    record = parse_line(orjson.dumps(line), split="train", file="train.jsonl", index=0, max_num_frames=64)
    assert isinstance(record, RejectRecord) and words in record.detail
