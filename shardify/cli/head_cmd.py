"""``shardify head URL [-n N] [--split S]``: the first samples of a built output, as text.

For each sample: its key, the input line it came from, the messages with ``<image>`` where
an image (or a video frame) goes, and its media members with their sizes. Reads only the
first shard(s) it needs, locally or from S3.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

import orjson

from shardify.cli.inspect_cmd import add_location_args, location_from
from shardify.errors import UsageError
from shardify.manifest import read_manifest
from shardify.progress import human_bytes
from shardify.storage import Location

if TYPE_CHECKING:
    from shardify.reader.stream import RawSample, SampleFailure

MAX_TEXT = 300


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("head", help="print the first samples of a built output")
    add_location_args(parser)
    parser.add_argument("-n", type=int, default=3, metavar="N", help="how many samples (default 3)")
    parser.add_argument("--split", default="train", help="which split (default train)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.n < 0:
        raise UsageError(f"-n {args.n}: give a number >= 0")
    from shardify.reader.stream import read_shard  # the reader package imports torch: only here

    output = location_from(args)
    manifest = read_manifest(output)
    info = manifest.splits.get(args.split)
    if info is None:
        raise UsageError(f"--split {args.split}: {output.display('manifest.json')} has splits "
                         f"{sorted(manifest.splits)}")  # fmt: skip
    shown = 0
    for shard in info.shards:
        if shown >= args.n:
            break
        for item in read_shard(output, shard.name, 0, min(shard.samples, args.n - shown), wanted=lambda _: True):
            print(_describe(item, output))
            shown += 1
    if shown == 0:
        print(f"{args.split}: no samples")
    return 0


def _describe(item: RawSample | SampleFailure, output: Location) -> str:
    from shardify.reader.decode import expand_video
    from shardify.reader.stream import SampleFailure

    if isinstance(item, SampleFailure):
        return f"! {item.shard} sample {item.index}: {item.reason}\n"
    doc: dict[str, Any] = orjson.loads(item.members["json"])
    source = doc.get("source") or {}
    lines = [f"== {item.key}  ({output.display(item.shard)} #{item.index}; "
             f"{source.get('file', '?')}:{source.get('line', '?')})"]  # fmt: skip
    messages = doc.get("messages") or []
    video = doc.get("video") if isinstance(doc.get("video"), dict) else None
    if video is not None:
        messages = expand_video(messages, len(video.get("frames") or []))
    for message in messages:
        lines.append(f"  {message.get('role', '?')}: {_content(message.get('content'))}")
    for suffix, data in item.members.items():
        if suffix != "json":
            lines.append(f"  [{suffix}] {human_bytes(len(data))}")
    return "\n".join(lines) + "\n"


def _content(content: Any) -> str:
    if isinstance(content, str):
        return _cut(content)
    parts = []
    for part in content or []:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append(_cut(str(part.get("text") or "")))
        elif kind in ("image", "video"):
            parts.append(f"<{kind}>")
    return " ".join(parts)


def _cut(text: str) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + " …"
