"""The driver's planning pass: stream each split's JSONL, cut it into shard tasks, and hand
every task out as soon as it is planned, while planning goes on in a background thread.

The first shard is being built within moments of the start whatever the input size; the
shard boundaries are those of the pure :func:`~shardify.planning.plan_shards` walk, so they
do not depend on the executor or on when tasks run. With ``shard.target_bytes``, media sizes
come from one listing per folder the JSONL references (S3: 1000 keys a request), never from
a request per file.
"""

from __future__ import annotations

import os
import posixpath
import queue
import threading
from typing import Iterator, Optional, Union

from shardify.config import Config
from shardify.inputs import LineMarks
from shardify.interrupts import block_in_this_thread
from shardify.layout import line_digests_name
from shardify.planning import LineInfo, ShardTask, plan_shards
from shardify.schema import SampleRecord, is_blank, parse_line
from shardify.storage import Location
from shardify.tarwriter import member_bytes

LINES_PER_SAMPLE_SLOT = 100
"""A shard covers at most 100 x max_samples lines, so mostly-rejected input still comes in
bounded tasks (each task holds its rejects until it finishes)."""
_SOURCE_FIELD_BYTES = 80  # the "source" object build_shard adds to each json
_DONE = object()


class SizeIndex:
    """Media file sizes for ``shard.target_bytes``: local files by ``stat``, remote ones from
    one listing of each folder (cached), so planning costs no request per file."""

    def __init__(self, source: Location) -> None:
        self.source = source
        self._folders: dict[str, dict[str, int]] = {}

    def size(self, path: str) -> Optional[int]:
        """The file's size, or None when it is missing (the shard task then rejects it)."""
        if self.source.is_local:
            try:
                return self.source.size(path)
            except OSError:
                return None
        folder, name = posixpath.split(path)
        if folder not in self._folders:
            self._folders[folder] = self.source.list_sizes(folder)
        return self._folders[folder].get(name)


def plan_split(source: Location, split: str, config: Config, *, marks: Optional[LineMarks] = None,
               sizes: Optional[SizeIndex] = None) -> Iterator[ShardTask]:  # fmt: skip
    """Stream the split's JSONL once and cut it into shard tasks; ``marks`` sees every line."""
    file = f"{split}.jsonl"
    target = config.shard.target_bytes
    index_of = sizes or SizeIndex(source)

    def lines() -> Iterator[LineInfo]:
        for index, (offset, raw) in enumerate(source.iter_lines(file)):
            weight: Optional[int] = None
            if marks is not None:
                marks.feed(raw)
            if not is_blank(raw):
                parsed = parse_line(raw, split=split, file=file, index=index,
                                    max_num_frames=config.video.max_num_frames)  # fmt: skip
                if isinstance(parsed, SampleRecord):
                    weight = _estimated_bytes(index_of, parsed, len(raw)) if target else 1
            yield LineInfo(index=index, offset=offset, length=len(raw), weight=weight)

    return plan_shards(lines(), split=split, file=file, max_samples=config.shard.max_samples,
                       target_bytes=target,
                       max_lines=LINES_PER_SAMPLE_SLOT * config.shard.max_samples)  # fmt: skip


def _estimated_bytes(sizes: SizeIndex, record: SampleRecord, line_bytes: int) -> int:
    """A sample's size in a shard, estimated from its line and its media files' sizes.

    A video counts as its file size (its JPEG frames are not known before extraction).
    """
    total = member_bytes(line_bytes + _SOURCE_FIELD_BYTES)
    for path in record.media:
        size = sizes.size(path)
        if size is not None:
            total += member_bytes(size)
    return total


class PlanStream:
    """Plans every split in a background thread; iterating yields each task once planned.

    When ``output`` is given, each split's line digests are committed to
    ``_shardify/lines/<split>.bin`` once its plan is complete. After the iteration ends,
    :attr:`plans` holds every split's tasks in order. An error in planning is raised by the
    iteration; :meth:`stop` ends planning early (an interrupted build).
    """

    def __init__(self, source: Location, splits: list[str], config: Config,
                 output: Optional[Location] = None) -> None:  # fmt: skip
        self.source = source
        self.splits = splits
        self.config = config
        self.output = output
        self.plans: dict[str, list[ShardTask]] = {split: [] for split in splits}
        self.planned_lines = 0
        self._queue: queue.Queue[Union[ShardTask, BaseException, object]] = queue.Queue(maxsize=10_000)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._plan_all, name="shardify-plan", daemon=True)
        self._thread.start()

    def __iter__(self) -> Iterator[ShardTask]:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, ShardTask)
            self.plans[item.split].append(item)
            self.planned_lines += item.end_line - item.first_line
            yield item

    def stop(self) -> None:
        self._stopped.set()
        while self._thread.is_alive():
            try:  # unblock a full queue so the thread sees the stop
                self._queue.get(timeout=0.05)
            except queue.Empty:
                pass

    def _plan_all(self) -> None:
        block_in_this_thread()
        try:
            sizes = SizeIndex(self.source)
            for split in self.splits:
                self._plan_one(split, sizes)
            self._queue.put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the iterating thread
            self._queue.put(exc)

    def _plan_one(self, split: str, sizes: SizeIndex) -> None:
        name = line_digests_name(split)
        staging = self.output.staging_path(name) if self.output is not None else None
        try:
            with open(staging or os.devnull, "wb") as out:
                marks = LineMarks(out) if staging else None
                for task in plan_split(self.source, split, self.config, marks=marks, sizes=sizes):
                    if self._stopped.is_set():
                        return
                    self._queue.put(task)
                if marks is not None:
                    marks.flush()
            if staging and self.output is not None:
                self.output.put_file(staging, name)
        finally:
            if staging and os.path.exists(staging):
                os.unlink(staging)
