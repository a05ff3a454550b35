"""The build config: YAML -> validated, frozen pydantic models.

``configs/full.yaml`` lists every key with its default; keep the two in step
(``tests/test_config.py`` checks that they agree).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import orjson
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from shardify.errors import ConfigError
from shardify.storage import normalise_location

_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "t": 1000**4, "tb": 1000**4, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}


def parse_bytes(value: Any) -> Any:
    """``"10MB"`` -> 10_000_000, ``"256 MiB"`` -> 268435456; numbers and others as they are."""
    if not isinstance(value, str):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", value)
    if match is None or match.group(2).lower() not in _UNITS:
        raise ValueError(f"{value!r} is not a size: give bytes, or a number with a unit "
                         "(e.g. 500MB, 2GiB)")  # fmt: skip
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


_Bytes = Annotated[int, BeforeValidator(parse_bytes)]

DEFAULT_NUM_FRAMES = 8
"""What the Aria loader uses when ``num_frames`` is missing, null or <= 0."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ShardConfig(_Model):
    """How samples are grouped into tar shards."""

    max_samples: int = Field(1000, ge=1, description="at most this many samples per shard")
    target_bytes: Optional[_Bytes] = Field(
        None, ge=1, description="aim shards at about this many bytes (from media sizes)"
    )


class ExecutorConfig(_Model):
    """Where the per-shard work runs."""

    kind: Literal["ray", "local"] = "ray"
    address: Optional[str] = Field(
        None, description="unset: start a private local Ray; 'auto': join the running cluster"
    )
    num_cpus: Optional[int] = Field(
        None, ge=1, description="CPUs of the local Ray that shardify starts (default: all)"
    )
    max_in_flight: Optional[int] = Field(
        None, ge=1, description="shard tasks submitted at once (default: 2 x cluster CPUs)"
    )


class IOConfig(_Model):
    """How a shard task reads media: reads in flight, bytes held ahead of the checks."""

    max_concurrency: Optional[int] = Field(
        None, ge=1, description="media reads in flight per shard task (default: 32 remote, 4 local)"
    )
    max_bytes_in_flight: _Bytes = Field(
        256 << 20, ge=1, description="stop reading ahead while fetched, unchecked media hold more"
    )


class ValidationConfig(_Model):
    """How hard each sample is checked, and what a bad one does to the build."""

    decode: Literal["full", "header"] = "full"
    on_error: Literal["skip", "fail"] = "skip"
    max_image_pixels: int = Field(89_478_485, ge=1)
    max_reject_fraction: Optional[float] = Field(
        None, ge=0, le=1, description="fail the build (exit 1) when more of a split is rejected"
    )
    max_image_bytes: _Bytes = Field(
        256 << 20, ge=1, description="an image file above this size is rejected before it is read"
    )
    max_video_bytes: _Bytes = Field(
        16 << 30, ge=1, description="a video file above this size is rejected (remote ones before the copy)"
    )


class ImageConfig(_Model):
    """Images are stored byte for byte unless ``reencode`` names a format."""

    reencode: Literal[False, "jpg", "png", "webp"] = False
    quality: int = Field(95, ge=1, le=100)

    @field_validator("reencode", mode="before")
    @classmethod
    def _normalise_reencode(cls, value: Any) -> Any:
        if isinstance(value, str) and value.lower() in {"jpeg", "jpg"}:
            return "jpg"
        if value in (None, "false", "False", "no", "none"):
            return False
        return value


class VideoConfig(_Model):
    """Frame extraction: which frames, how they are encoded, and limits."""

    sampling: Literal["aria", "uniform"] = "aria"
    max_num_frames: int = Field(256, ge=1)
    jpeg_quality: int = Field(90, ge=1, le=100)
    max_side: Optional[int] = Field(None, ge=1)
    timeout_s: float = Field(120.0, gt=0)
    seek: Literal["auto", "never"] = Field(
        "auto", description="auto: seek for sparse frames when the packet table is trusted"
    )


class Config(_Model):
    """A whole build config (see configs/full.yaml for every key and its default)."""

    input: str
    output: Optional[str] = None
    """Required to build; ``validate`` runs without it (a report on the terminal only)."""
    splits: Optional[list[str]] = None
    storage_options: dict[str, Any] = Field(default_factory=dict)
    shard: ShardConfig = ShardConfig()
    executor: ExecutorConfig = ExecutorConfig()
    io: IOConfig = IOConfig()
    validation: ValidationConfig = ValidationConfig()
    image: ImageConfig = ImageConfig()
    video: VideoConfig = VideoConfig()

    @field_validator("splits")
    @classmethod
    def _check_splits(cls, value: Optional[list[str]]) -> Optional[list[str]]:
        if value is None:
            return value
        if not value:
            raise ValueError("give at least one split, e.g. [train]")
        for name in value:
            if not name or "/" in name or "." in name or "-" in name:
                raise ValueError(f"split name {name!r} must be a plain word like 'train'")
        if len(set(value)) != len(value):
            raise ValueError("a split is listed twice")
        return value

    def output_settings(self) -> dict[str, Any]:
        """Every setting that decides the bytes of the output, as plain JSON values.

        Leaves out where the output goes, how the work is executed (``executor``, ``io``), storage options (which
        may hold credentials) and ``validation.on_error``/``max_reject_fraction`` (they stop a build, never change
        what a finished build holds), so the same data built by any executor matches. The
        input is normalised (absolute local path, no trailing slash).
        """
        settings = self.model_dump(
            mode="json",
            exclude={"output": True, "executor": True, "storage_options": True, "io": True,
                     "validation": {"on_error", "max_reject_fraction"}},
        )  # fmt: skip
        settings["input"] = normalise_location(self.input)
        return settings

    def fingerprint(self) -> str:
        """sha256 of :meth:`output_settings`: equal fingerprints, equal outputs."""
        return settings_fingerprint(self.output_settings())

    def redacted(self) -> dict[str, Any]:
        """The config as a dict with storage option values hidden, for logs and reports."""
        data = self.model_dump(mode="json")
        data["storage_options"] = {key: "***" for key in self.storage_options}
        return data


def settings_fingerprint(settings: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(settings, option=orjson.OPT_SORT_KEYS)).hexdigest()


def describe_changes(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> list[str]:
    """``key: old -> new`` for every leaf setting that differs (dotted keys)."""
    changes = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            changes += describe_changes(old, new, f"{prefix}{key}.")
        elif old != new:
            changes.append(f"{prefix}{key}: {old!r} -> {new!r}")
    return changes


def load_config(
    source: str | Path | dict[str, Any], overrides: Optional[list[str]] = None
) -> Config:
    """Read a YAML file (or a dict), apply ``key.path=value`` overrides and validate.

    Raises ConfigError with one line that names the file, the key and the fix.
    """
    where = "config" if isinstance(source, dict) else str(source)
    data = dict(source) if isinstance(source, dict) else _read_yaml(Path(source))
    for item in overrides or []:
        _apply_override(data, item)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(where, exc, overrides or [])) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{at}: not valid YAML: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a YAML mapping with input: and output:")
    return data


def _apply_override(data: dict[str, Any], item: str) -> None:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set shard.max_samples=500")
    parts = key.strip().split(".")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def _describe(where: str, exc: ValidationError, overrides: list[str]) -> str:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"] if not str(p).startswith("literal[")) or "(top)"
    for item in overrides:  # blame the --set that introduced the key, not the file
        set_key = item.partition("=")[0].strip()
        if key == set_key or key.startswith(set_key + "."):
            where = f"--set {item}"
    kind = err["type"]
    if kind == "extra_forbidden":
        fix = "remove it or check its spelling (see configs/full.yaml for every key)"
        return f"{where}: unknown key {key!r}: {fix}"
    if kind == "missing":
        return f"{where}: missing required key {key!r} (a minimal config needs input: and output:)"
    given = err.get("input")
    shown = "" if isinstance(given, dict) else f" (got {given!r})"
    message = re.sub(r" or instance of \w+", "", str(err["msg"])).removeprefix("Value error, ")
    if kind in ("dict_type", "model_type"):
        message = f"{key} is a section: give its keys, e.g. {key}: {{...}} (see configs/full.yaml)"
    return f"{where}: bad value for {key!r}{shown}: {message}"

