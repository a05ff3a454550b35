"""Every reject code of rejects.jsonl, defined once (CONTRACT.md §4; docs in README.md).

A tiny module with no imports, so the schema checks, the media checks and the video helper
process all name codes from one place.
"""

from __future__ import annotations

INVALID_JSON = "invalid_json"
INVALID_SCHEMA = "invalid_schema"
IMAGE_COUNT_MISMATCH = "image_count_mismatch"
VIDEO_COUNT_MISMATCH = "video_count_mismatch"
IMAGES_AND_VIDEO = "images_and_video"
PATH_OUTSIDE_ROOT = "path_outside_root"
MISSING_FILE = "missing_file"
UNREADABLE_FILE = "unreadable_file"
"""The file exists but cannot be read as one: a symlink loop, a name too long, no
permission, a socket/FIFO/device, or it changed size while it was read."""
FILE_TOO_LARGE = "file_too_large"
"""Larger than validation.max_image_bytes / max_video_bytes (rejected before reading)."""
UNREADABLE_IMAGE = "unreadable_image"
IMAGE_TOO_LARGE = "image_too_large"
UNREADABLE_VIDEO = "unreadable_video"
BAD_NUM_FRAMES = "bad_num_frames"
VIDEO_TIMEOUT = "video_timeout"

REJECT_CODES = (
    INVALID_JSON, INVALID_SCHEMA, IMAGE_COUNT_MISMATCH, VIDEO_COUNT_MISMATCH, IMAGES_AND_VIDEO,
    PATH_OUTSIDE_ROOT, MISSING_FILE, UNREADABLE_FILE, FILE_TOO_LARGE, UNREADABLE_IMAGE,
    IMAGE_TOO_LARGE, UNREADABLE_VIDEO, BAD_NUM_FRAMES, VIDEO_TIMEOUT,
)  # fmt: skip
