"""Stream samples out of one tar shard through fsspec, with retries on read errors.

A shard is read front to back with :mod:`tarfile` in streaming mode (``r|``), so the same
code serves local files, ``s3://`` and ``memory://`` without shell pipes or seeking. Members
are grouped into samples by key (webdataset's convention: the name up to the first dot).

Two kinds of failure are told apart:

- a *read error* (``OSError`` from the filesystem: a reset connection, a timeout) is
  retried: the shard is reopened and the samples already delivered are skipped;
- a *corrupt shard* (bad tar data, or fewer samples than the manifest lists) is not: every
  sample that could not be read is reported as a :class:`SampleFailure`.
"""

from __future__ import annotations

import functools
import logging
import tarfile
import time
from dataclasses import dataclass, field
from typing import IO, Callable, Iterator, Optional, Union

from shardify.errors import StorageError
from shardify.storage import Location
from shardify.tarwriter import split_member_name

log = logging.getLogger(__name__)

_BLOCK_SIZE = 8 << 20
"""fsspec read-ahead for remote shards: few requests, bounded memory."""


@dataclass(slots=True)
class RawSample:
    """One sample's members as stored: suffix -> bytes."""

    key: str
    members: dict[str, bytes]
    shard: str
    index: int
    """The sample's 0-based position inside its shard."""


@dataclass(frozen=True, slots=True)
class SampleFailure:
    """A sample that could not be read (corrupt or truncated shard)."""

    shard: str
    index: int
    reason: str


@dataclass(slots=True)
class ReadStats:
    """Counters of what went wrong while reading (per process)."""

    retries: int = 0
    skipped_samples: int = 0
    corrupt_shards: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {"retries": self.retries, "skipped_samples": self.skipped_samples,
                "corrupt_shards": self.corrupt_shards, "reasons": dict(self.reasons)}  # fmt: skip


class _ShardCorruptError(Exception):
    """The tar data itself is bad: retrying cannot help."""


def read_shard(
    location: Location,
    name: str,
    first: int,
    stop: int,
    *,
    wanted: Callable[[int], bool],
    retries: int = 3,
    backoff_s: float = 0.5,
    stats: Optional[ReadStats] = None,
    opener: Optional[Callable[[], IO[bytes]]] = None,
) -> Iterator[Union[RawSample, SampleFailure]]:
    """Yield samples ``first..stop-1`` of shard ``name`` for which ``wanted(index)`` is true.

    Unwanted samples are passed over without keeping their bytes. Read errors are retried
    ``retries`` times (reopening the shard); once retries run out, StorageError is raised.
    ``opener`` opens the shard from its first byte (the read-ahead's file object); by
    default it is streamed through ``location.open``.
    """
    if opener is None:
        opener = functools.partial(_open_shard, location, name)
    position = first
    attempt = 0
    while position < stop:
        reached = [position]  # samples the pass got to, wanted or not
        try:
            for sample in _read_from(opener, name, position, stop, wanted, reached):
                position = sample.index + 1
                yield sample
            if max(position, reached[0]) < stop:
                raise _ShardCorruptError(f"ends after {position} samples, manifest lists at least {stop}")
            return
        except _ShardCorruptError as exc:
            if stats is not None:
                stats.corrupt_shards += 1
            reason = f"{location.display(name)}: corrupt shard: {exc}"
            for index in range(position, stop):
                if wanted(index):
                    yield SampleFailure(shard=name, index=index, reason=reason)
            return
        except (OSError, StorageError) as exc:
            if isinstance(exc, FileNotFoundError) or attempt >= retries:
                raise StorageError(
                    f"{location.display(name)}: read failed after {attempt + 1} attempts: {exc}"
                ) from exc
            attempt += 1
            if stats is not None:
                stats.retries += 1
            log.warning("%s: read error (%s); retrying from sample %d (attempt %d of %d)",
                        location.display(name), exc, position, attempt, retries)  # fmt: skip
            time.sleep(backoff_s * attempt)


def _open_shard(location: Location, name: str) -> IO[bytes]:
    kwargs = {} if location.is_local else {"block_size": _BLOCK_SIZE}
    return location.open(name, "rb", **kwargs)


def _read_from(
    opener: Callable[[], IO[bytes]], name: str, first: int, stop: int, wanted: Callable[[int], bool],
    reached: list[int],
) -> Iterator[RawSample]:
    """One pass over the shard from its start; samples ``first..stop-1`` that are wanted."""
    with opener() as handle:
        try:
            tar = tarfile.open(fileobj=handle, mode="r|", bufsize=1 << 16)  # type: ignore[call-overload]
        except tarfile.TarError as exc:
            raise _ShardCorruptError(f"not a tar archive: {exc}") from exc
        with tar:
            yield from _group_members(tar, name, first, stop, wanted, reached)


def _group_members(
    tar: tarfile.TarFile, name: str, first: int, stop: int, wanted: Callable[[int], bool],
    reached: list[int],
) -> Iterator[RawSample]:
    """Samples ``first..stop-1`` that are wanted; ``reached[0]`` counts every sample whose
    members were all seen (wanted or not), so skipped last samples are not a short shard."""
    index = -1
    current: Optional[RawSample] = None
    try:
        for member in tar:
            key, suffix = split_member_name(member.name)
            if current is None or key != current.key:
                if current is not None:
                    reached[0] = max(reached[0], current.index + 1)
                    if current.index >= first and wanted(current.index):
                        yield current
                index += 1
                if index >= stop:
                    return
                current = RawSample(key=key, members={}, shard=name, index=index)
            if index >= first and member.isfile() and wanted(index):
                extracted = tar.extractfile(member)
                if extracted is not None:
                    current.members[suffix] = extracted.read()
    except (tarfile.TarError, EOFError) as exc:
        raise _ShardCorruptError(f"bad tar data in sample {index}: {exc}") from exc
    if current is not None:
        reached[0] = max(reached[0], current.index + 1)
        if current.index >= first and wanted(current.index):
            yield current
