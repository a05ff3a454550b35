"""Reruns by what changed in the input: unchanged -> nothing to do; lines appended -> an
incremental build byte-identical to a clean build of the longer input; anything else ->
exit 2 naming the split and the first changed line, also after an interrupted build."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shardify.pipeline as pipeline
from shardify.config import load_config
from shardify.datagen import DatasetSpec, chat, image_item, make_dataset
from shardify.errors import OutputMismatchError
from shardify.inputs import Change, LineMarks, classify, digest_input, first_change
from shardify.pipeline import build
from shardify.storage import Location
from tests.conftest import run_cli, write_config
from tests.fixtures.ray import output_files

EXTRA = [
    "{not json",
    "",
    orjson.dumps({"messages": chat([image_item()], "x"), "images": ["images/nope.jpg"]}).decode(),
]


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset root whose train.jsonl lines (valid, invalid, blank) the tests recombine."""
    spec = DatasetSpec(image_samples=8, video_samples=0, text_samples=6, test_split=False, extra_lines=EXTRA)
    return make_dataset(tmp_path_factory.mktemp("pool") / "ds", spec)


def pool_lines(pool: Path) -> list[bytes]:
    return (pool / "train.jsonl").read_bytes().splitlines(keepends=True)


def dataset(pool: Path, where: Path, lines: list[bytes]) -> Path:
    """A dataset root at ``where`` with the pool's media and exactly ``lines``."""
    root = where / "ds"
    if not root.exists():
        shutil.copytree(pool, root)
    (root / "train.jsonl").write_bytes(b"".join(lines))
    return root


def config(root: Path, out: Path, max_samples: int = 3, **keys: Any) -> Any:
    return load_config({"input": str(root), "output": str(out), "shard": {"max_samples": max_samples},
                        "executor": {"kind": "local"}, **keys})  # fmt: skip


def files(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in output_files(out)}


def clean_build(pool: Path, where: Path, lines: list[bytes], max_samples: int) -> dict[str, bytes]:
    """The output of a clean build of ``lines`` from the same root path as the rerun."""
    root = where / "ds"
    saved = (root / "train.jsonl").read_bytes()
    (root / "train.jsonl").write_bytes(b"".join(lines))
    out = where / "clean"
    build(config(root, out, max_samples))
    (root / "train.jsonl").write_bytes(saved)
    return files(out)


# -- digests --


@given(st.binary(max_size=300), st.binary(max_size=300))
def test_an_append_is_a_byte_prefix_and_anything_else_is_a_change(old: bytes, extra: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        source = Location(tmp)
        (Path(tmp) / "a.jsonl").write_bytes(old)
        before, _ = digest_input(source, "a.jsonl")
        (Path(tmp) / "a.jsonl").write_bytes(old + extra)
        after, prefix = digest_input(source, "a.jsonl", prefix_at=before.bytes)
        assert classify(before, after, prefix) is (Change.APPENDED if extra else Change.SAME)
        whole = old + extra  # lines end at b"\n" only, as the planner reads them
        assert after.lines == whole.count(b"\n") + (1 if whole and not whole.endswith(b"\n") else 0)
        if old:
            (Path(tmp) / "a.jsonl").write_bytes(bytes([old[0] ^ 1]) + old[1:] + extra)
            edited, prefix = digest_input(source, "a.jsonl", prefix_at=before.bytes)
            assert classify(before, edited, prefix) is Change.CHANGED


@given(st.lists(st.binary(min_size=1, max_size=20).map(lambda b: b.replace(b"\n", b"") + b"\n"),
                min_size=1, max_size=30), st.data())  # fmt: skip
def test_the_first_changed_line_is_found(lines: list[bytes], data: st.DataObject) -> None:
    """Line digests from planning name exactly the first line that differs."""
    marks = LineMarks(out := _Sink())
    for line in lines:
        marks.feed(line)
    marks.flush()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "a.jsonl").write_bytes(b"".join(lines))
        old, _ = digest_input(Location(tmp), "a.jsonl")
    assert marks.lines == old.lines
    at = data.draw(st.integers(0, len(lines) - 1))
    kind = data.draw(st.sampled_from(["edit", "insert", "truncate"]))
    new = list(lines)
    if kind == "edit":
        new[at] = b"X" + new[at]
    elif kind == "insert":
        new.insert(at, b"inserted\n")
    else:
        del new[at:]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "a.jsonl").write_bytes(b"".join(new))
        found = first_change(Location(tmp), "a.jsonl", old, bytes(out))
    if kind == "insert" and new[at] == lines[at]:  # inserting a copy of the line that follows
        assert found.line is not None and found.line > at
    else:
        assert found.line == at + 1, found.what


class _Sink(bytearray):
    def write(self, data: bytes) -> int:
        self.extend(data)
        return len(data)


# -- appends --


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(base=st.integers(1, 12), added=st.integers(1, 10), max_samples=st.integers(1, 5), seed=st.integers(0, 99))
def test_append_then_rerun_equals_a_clean_build(pool: Path, base: int, added: int, max_samples: int,
                                                seed: int) -> None:  # fmt: skip
    lines = pool_lines(pool)
    picked = [lines[(seed + 7 * i) % len(lines)] for i in range(base + added)]
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        root = dataset(pool, where, picked[:base])
        out = where / "out"
        build(config(root, out, max_samples))
        (root / "train.jsonl").write_bytes(b"".join(picked))
        report = build(config(root, out, max_samples))
        assert report.appended_lines == added and not report.already_complete
        assert files(out) == clean_build(pool, where, picked, max_samples)


@pytest.mark.parametrize(("base", "added", "kept"), [(7, 1, 2), (6, 7, 2), (1, 1, 0)],
                         ids=["inside-the-last-shard", "new-shards", "one-line"])  # fmt: skip
def test_an_incremental_build_keeps_the_finished_shards(pool: Path, tmp_path: Path, base: int, added: int,
                                                        kept: int) -> None:  # fmt: skip
    lines = [line for line in pool_lines(pool) if line.strip()][: base + added]
    root = dataset(pool, tmp_path, lines[:base])
    out = tmp_path / "out"
    build(config(root, out))
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    (root / "train.jsonl").write_bytes(b"".join(lines))
    report = build(config(root, out))
    assert report.resumed_shards == kept and report.appended_lines == added
    untouched = [n for n, t in before.items() if (out / n).stat().st_mtime_ns == t]
    assert len(untouched) == kept  # the kept shards were not rewritten
    assert files(out) == clean_build(pool, tmp_path, lines, 3)
    again = build(config(root, out))
    assert again.already_complete


def test_a_last_line_without_newline_then_appended(pool: Path, tmp_path: Path) -> None:
    lines = [line for line in pool_lines(pool) if line.strip()][:5]
    root = dataset(pool, tmp_path, lines[:4] + [lines[4].rstrip(b"\n")])
    out = tmp_path / "out"
    build(config(root, out))
    grown = lines + lines[:2]
    (root / "train.jsonl").write_bytes(b"".join(grown))
    assert build(config(root, out)).appended_lines == 2
    assert files(out) == clean_build(pool, tmp_path, grown, 3)


def test_a_test_split_added_later_is_built(pool: Path, tmp_path: Path) -> None:
    lines = [line for line in pool_lines(pool) if line.strip()]
    root = dataset(pool, tmp_path, lines[:5])
    out = tmp_path / "out"
    build(config(root, out))
    (root / "test.jsonl").write_bytes(b"".join(lines[5:8]))
    report = build(config(root, out))
    assert report.resumed_shards == 2 and "test" in report.manifest.splits
    clean = tmp_path / "clean"
    build(config(root, clean))
    assert files(out) == files(clean)


# -- changes that are refused --


def _edit(lines: list[bytes]) -> tuple[list[bytes], int]:
    changed = list(lines)
    changed[3] = changed[3].replace(b'"text"', b'"text" ', 1)
    return changed, 4


def _insert(lines: list[bytes]) -> tuple[list[bytes], int]:
    return lines[:1] + [lines[5]] + lines[1:], 2


def _truncate(lines: list[bytes]) -> tuple[list[bytes], int]:
    return lines[:-2], len(lines) - 1


CHANGES = {"edit": _edit, "insert": _insert, "truncate": _truncate}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_change_after_completion_is_refused_naming_the_line(pool: Path, tmp_path: Path, change: str) -> None:
    lines = [line for line in pool_lines(pool) if line.strip()][:9]
    root = dataset(pool, tmp_path, lines)
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "cfg.yaml", input=str(root), output=str(out),
                       shard={"max_samples": 3}, executor={"kind": "local"})  # fmt: skip
    assert run_cli("build", str(cfg)).returncode == 0
    before = files(out)
    changed, line = CHANGES[change](lines)
    (root / "train.jsonl").write_bytes(b"".join(changed))
    done = run_cli("build", str(cfg))
    assert done.returncode == 2, done.stderr
    message = done.stderr.strip().splitlines()
    assert len(message) == 1, done.stderr  # one line, no traceback
    assert f"train.jsonl:{line}: train changed since the build" in message[0]
    assert "--overwrite" in message[0]
    assert files(out) == before  # nothing touched: the finished build stays as it was
    assert run_cli("build", str(cfg), "--overwrite").returncode == 0
    assert files(out) == clean_build(pool, tmp_path, changed, 3)


class _Interrupt(KeyboardInterrupt):
    pass


def interrupted_build(cfg: Any, monkeypatch: pytest.MonkeyPatch, after: int) -> None:
    """A build stopped (as by Ctrl-C) once ``after`` shards are done."""
    real = pipeline.build_shard
    calls = iter(range(10**6))

    def stopping(*args: Any, **kwargs: Any) -> Any:
        if next(calls) >= after:
            raise _Interrupt
        return real(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "build_shard", stopping)
        with pytest.raises(_Interrupt):
            build(cfg)


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_change_after_an_interrupted_build_is_refused(pool: Path, tmp_path: Path, change: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    lines = [line for line in pool_lines(pool) if line.strip()][:9]
    root = dataset(pool, tmp_path, lines)
    out = tmp_path / "out"
    interrupted_build(config(root, out), monkeypatch, after=1)
    assert not (out / "manifest.json").exists() and (out / "_shardify" / "build.json").exists()
    changed, line = CHANGES[change](lines)
    (root / "train.jsonl").write_bytes(b"".join(changed))
    with pytest.raises(OutputMismatchError, match=f"train.jsonl:{line}: train changed since the build"):
        build(config(root, out))


def test_an_append_after_an_interrupted_build_resumes_into_a_clean_build(
    pool: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [line for line in pool_lines(pool) if line.strip()][:12]
    root = dataset(pool, tmp_path, lines[:7])
    out = tmp_path / "out"
    interrupted_build(config(root, out), monkeypatch, after=2)
    (root / "train.jsonl").write_bytes(b"".join(lines))
    report = build(config(root, out))
    assert report.resumed_shards == 2
    assert files(out) == clean_build(pool, tmp_path, lines, 3)


def test_an_interrupted_incremental_build_finishes_on_rerun(
    pool: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [line for line in pool_lines(pool) if line.strip()][:12]
    root = dataset(pool, tmp_path, lines[:4])
    out = tmp_path / "out"
    build(config(root, out))
    (root / "train.jsonl").write_bytes(b"".join(lines))
    interrupted_build(config(root, out), monkeypatch, after=1)
    assert not (out / "manifest.json").exists()  # never a manifest over a half-extended build
    build(config(root, out))
    assert files(out) == clean_build(pool, tmp_path, lines, 3)


def test_a_split_that_vanished_is_refused(pool: Path, tmp_path: Path) -> None:
    lines = [line for line in pool_lines(pool) if line.strip()]
    root = dataset(pool, tmp_path, lines[:4])
    (root / "test.jsonl").write_bytes(b"".join(lines[4:6]))
    out = tmp_path / "out"
    build(config(root, out))
    (root / "test.jsonl").unlink()
    with pytest.raises(OutputMismatchError, match="test: test.jsonl was part of the build"):
        build(config(root, out))


def test_a_round_one_manifest_asks_for_overwrite(pool: Path, tmp_path: Path) -> None:
    root = dataset(pool, tmp_path, pool_lines(pool)[:4])
    out = tmp_path / "out"
    build(config(root, out))
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    for info in manifest["splits"].values():
        info.pop("input")
    (out / "manifest.json").write_bytes(orjson.dumps(manifest))
    with pytest.raises(OutputMismatchError, match="did not record its input"):
        build(config(root, out))
    assert build(config(root, out), overwrite=True).resumed_shards == 0


@pytest.mark.s3
@pytest.mark.slow
def test_append_on_s3_equals_a_clean_build(pool: Path, tmp_path: Path, s3_server: Any, s3_bucket: str) -> None:
    from tests.fixtures.s3 import get_object, list_keys, upload_tree

    lines = [line for line in pool_lines(pool) if line.strip()][:12]
    local = dataset(pool, tmp_path, lines[:5])
    upload_tree(s3_server, local, s3_bucket, "ds")
    keys = {"input": f"s3://{s3_bucket}/ds", "shard": {"max_samples": 3}, "executor": {"kind": "local"},
            "storage_options": s3_server.options}  # fmt: skip
    build(load_config({**keys, "output": f"s3://{s3_bucket}/out"}))
    s3_server.client().put_object(Bucket=s3_bucket, Key="ds/train.jsonl", Body=b"".join(lines))
    report = build(load_config({**keys, "output": f"s3://{s3_bucket}/out"}))
    assert report.appended_lines == 7 and report.resumed_shards == 1
    build(load_config({**keys, "output": f"s3://{s3_bucket}/clean"}))
    names = list_keys(s3_server, s3_bucket, "out")
    assert names == list_keys(s3_server, s3_bucket, "clean") and "manifest.json" in names
    for name in names:
        assert get_object(s3_server, s3_bucket, f"out/{name}") == get_object(s3_server, s3_bucket, f"clean/{name}"), name


@pytest.mark.ray
@pytest.mark.slow
def test_append_with_ray_equals_a_clean_local_build(pool: Path, tmp_path: Path, ray_cluster: Any) -> None:
    lines = [line for line in pool_lines(pool) if line.strip()][:11]
    root = dataset(pool, tmp_path, lines[:5])
    out = tmp_path / "out"
    on_ray = {"executor": {"kind": "ray", "address": ray_cluster.address}}
    build(config(root, out, **on_ray))
    (root / "train.jsonl").write_bytes(b"".join(lines))
    report = build(config(root, out, **on_ray))
    assert report.appended_lines == 6 and report.resumed_shards == 1
    assert files(out) == clean_build(pool, tmp_path, lines, 3)
