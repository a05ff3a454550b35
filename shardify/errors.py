"""The one exception tree of shardify.

Every error a user can meet derives from :class:`ShardifyError` and says what went wrong,
where (file:line, config key, URL) and how to fix it::

    ShardifyError
    ├── ConfigError        bad config file, key or value           (CLI exit 2)
    ├── UsageError         bad command line                         (CLI exit 2)
    ├── StorageError       cannot read or write a location          (CLI exit 1, or 2 at start)
    │   └── AccessError    missing bucket, bad credentials at start (CLI exit 2)
    ├── BuildError         the build cannot go on                   (CLI exit 1)
    │   └── SampleError    one sample is bad and on_error=fail      (CLI exit 1)
    ├── OutputMismatchError an existing output was built with another config (exit 2)
    ├── ManifestError      a manifest is missing or unreadable      (CLI exit 1)
    ├── VerifyError        a built output does not match its manifest (CLI exit 1)
    └── ReaderError        the reader met a corrupt shard or sample with on_error=raise

:class:`MediaError` is not raised to users: media checks raise it with a reject code and
the build turns it into a line of ``rejects.jsonl``.
"""

from __future__ import annotations


class ShardifyError(Exception):
    """Root of every error shardify raises on purpose."""

    exit_code = 1


class ConfigError(ShardifyError):
    """The config file, a key or a value is wrong; the message names the key."""

    exit_code = 2


class UsageError(ShardifyError):
    """The command line is wrong."""

    exit_code = 2


class StorageError(ShardifyError):
    """Reading or writing a location failed."""


class AccessError(StorageError):
    """A location cannot be reached at all (missing bucket, bad credentials, no such root)."""

    exit_code = 2


class BuildError(ShardifyError):
    """The build cannot continue."""


class SampleError(BuildError):
    """A sample was rejected and ``validation.on_error`` is ``fail``."""

    def __init__(self, file: str, line: int, reason: str, detail: str) -> None:
        super().__init__(
            f"{file}:{line}: {reason}: {detail} "
            "(set validation.on_error: skip to record bad samples in rejects.jsonl and go on)"
        )
        self.file = file
        self.line = line
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> tuple[type, tuple[str, int, str, str]]:
        return (type(self), (self.file, self.line, self.reason, self.detail))


class OutputMismatchError(ShardifyError):
    """The output location holds a build made with a different config."""

    exit_code = 2


class ManifestError(ShardifyError):
    """A manifest is missing, unreadable or of an unknown format."""


class VerifyError(ShardifyError):
    """A built output does not match its manifest."""


class ReaderError(ShardifyError):
    """The reader met a corrupt shard or sample and was told to raise."""


class MediaError(Exception):
    """One media file failed a check; ``code`` is a reject code of rejects.jsonl."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.code, self.detail))
