"""End to end through the CLI: every line accounted for, rejects explained, bytes preserved,
deterministic and resumable output, and the validate / verify / inspect commands."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import webdataset as wds
from PIL import Image

from shardify.datagen import DatasetSpec, chat, image_item, make_dataset, make_image, text_item
from tests.conftest import run_cli, write_config
from tests.fixtures.ray import assert_same_output

pytestmark = pytest.mark.slow

IMG, TXT = image_item(), text_item("look")


def line(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def make_reject_dataset(root: Path, outside: Path) -> tuple[Path, dict[int, str]]:
    """A dataset with good lines and one line for each non-video reject code.

    Returns the root and {1-based line: expected reason} for the bad lines.
    """
    (root / "img").mkdir(parents=True)
    (root / "img/a.jpg").write_bytes(make_image(48, 32, seed=1))
    (root / "img/b.png").write_bytes(make_image(20, 20, seed=2, fmt="PNG"))
    (root / "img/png_named.jpg").write_bytes(make_image(24, 24, seed=3, fmt="PNG"))
    (root / "img/truncated.jpg").write_bytes(make_image(200, 200, seed=4)[:900])
    (root / "img/not_image.jpg").write_bytes(b"this is text")
    (root / "img/huge.png").write_bytes(make_image(1100, 1000, seed=5, fmt="PNG"))
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "secret.jpg").write_bytes(make_image(8, 8))
    os.symlink(outside / "secret.jpg", root / "img/link.jpg")
    good = [
        line({"messages": chat([IMG, TXT], "a"), "images": ["img/a.jpg"]}),
        line({"messages": chat([IMG, IMG, TXT], "two"), "images": ["img/a.jpg", "img/b.png"], "extra": {"k": 1}}),
        line({"messages": chat([TXT], "text only")}),
        line({"messages": chat([IMG], "mislabeled"), "images": ["./img/png_named.jpg"]}),
    ]
    bad = {
        "invalid_json": '{"messages": [], }',
        "invalid_schema": line({"messages": [{"role": "robot", "content": []}]}),
        "image_count_mismatch": line({"messages": chat([IMG, IMG], "x"), "images": ["img/a.jpg"]}),
        "video_count_mismatch": line({"messages": chat([TXT], "x"), "video": {"path": "v.mp4", "num_frames": 4}}),
        "images_and_video": line({"messages": chat([IMG], "x"), "images": ["img/a.jpg"], "video": {"path": "v.mp4"}}),
        "bad_num_frames": line({"messages": chat([{"type": "video"}], "x"), "video": {"path": "v.mp4", "num_frames": True}}),
        "path_outside_root": line({"messages": chat([IMG], "x"), "images": ["../outside/secret.jpg"]}),
        "missing_file": line({"messages": chat([IMG], "x"), "images": ["img/nope.jpg"]}),
        "unreadable_image": line({"messages": chat([IMG], "x"), "images": ["img/truncated.jpg"]}),
        "image_too_large": line({"messages": chat([IMG], "x"), "images": ["img/huge.png"]}),
    }
    extra_bad = [
        ("path_outside_root", line({"messages": chat([IMG], "x"), "images": ["img/link.jpg"]})),
        ("path_outside_root", line({"messages": chat([IMG], "x"), "images": ["/etc/hostname"]})),
        ("path_outside_root", line({"messages": chat([IMG], "x"), "images": ["http://example.com/a.jpg"]})),
        ("unreadable_image", line({"messages": chat([IMG], "x"), "images": ["img/not_image.jpg"]})),
        ("invalid_json", '{"messages": "unterminated'),
    ]
    rows: list[tuple[str | None, str]] = [(None, good[0]), (None, "")]
    for reason, text in list(bad.items()) + extra_bad:
        rows.append((reason, text))
        rows.append((None, good[len(rows) % len(good)]))
    rows.append((None, "   "))
    expected = {i + 1: reason for i, (reason, _) in enumerate(rows) if reason}
    body = "\r\n".join(text for _, text in rows) + "\r\n"
    (root / "train.jsonl").write_bytes(b"\xef\xbb\xbf" + body.encode())
    return root, expected


def config_for(tmp: Path, root: Path, out: Path, **extra: Any) -> Path:
    keys: dict[str, Any] = {"input": str(root), "output": str(out), "executor": {"kind": "local"},
                            "shard": {"max_samples": 3}, "validation": {"max_image_pixels": 1_000_000}}
    keys.update(extra)
    return write_config(tmp / f"{out.name}.yaml", **keys)


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.tar"))}


def read_samples(out: Path) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    for path in sorted(out.glob("*.tar")):
        with tarfile.open(path) as tar:
            for member in tar:
                key, _, suffix = member.name.partition(".")
                samples.setdefault(f"{path.name.split('-')[0]}/{key}", {})[suffix] = tar.extractfile(member).read()  # type: ignore[union-attr]
    return samples


@pytest.fixture
def reject_build(tmp_path: Path) -> tuple[Path, Path, dict[int, str], subprocess.CompletedProcess[str]]:
    root, expected = make_reject_dataset(tmp_path / "ds", tmp_path / "outside")
    out = tmp_path / "out"
    result = run_cli("build", str(config_for(tmp_path, root, out)))
    return root, out, expected, result


def test_every_line_is_in_a_shard_or_in_rejects(reject_build) -> None:  # type: ignore[no-untyped-def]
    root, out, expected, result = reject_build
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    train = manifest["splits"]["train"]
    lines = root.joinpath("train.jsonl").read_bytes().count(b"\n")
    assert train["lines"] == lines
    assert train["samples"] + train["rejected"] + train["blank"] == lines
    assert train["blank"] == 2 and train["rejected"] == len(expected)
    assert sum(s["samples"] for s in train["shards"]) == train["samples"]
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    assert {r["line"]: r["reason"] for r in rejects} == expected
    assert all(r["split"] == "train" and len(r["detail"]) > 10 for r in rejects)
    by_reason: dict[str, list[str]] = {}
    for r in rejects:
        by_reason.setdefault(r["reason"], []).append(r["detail"])
    assert by_reason["invalid_json"] == ["trailing comma at column 16",
                                         "unterminated string starting at column 14"]
    assert "img/nope.jpg" in by_reason["missing_file"][0]
    assert "max_image_pixels=1000000" in by_reason["image_too_large"][0]
    symlink = next(r for r in rejects if "link.jpg" in r["detail"])
    assert symlink["reason"] == "path_outside_root" and "symlink" in symlink["detail"]
    assert "train" in result.stdout and "rejects by reason" in result.stdout


def test_accepted_samples_keep_json_and_image_bytes(reject_build) -> None:  # type: ignore[no-untyped-def]
    root, out, expected, _ = reject_build
    source_lines = root.joinpath("train.jsonl").read_bytes()[3:].split(b"\r\n")
    samples = read_samples(out)
    accepted = [i for i, text in enumerate(source_lines) if text.strip() and i + 1 not in expected]
    assert sorted(samples) == [f"train/{i:09d}" for i in accepted]
    for index in accepted:
        original = orjson.loads(source_lines[index])
        members = samples[f"train/{index:09d}"]
        doc = orjson.loads(members["json"])
        assert doc["messages"] == original["messages"]
        assert doc["source"] == {"split": "train", "file": "train.jsonl", "line": index + 1}
        for key in set(original) - {"messages", "images"}:
            assert doc[key] == original[key]
        paths = original.get("images", [])
        assert doc.get("image_paths", []) == paths
        assert len(doc.get("images", [])) == len(paths)
        for suffix, path in zip(doc.get("images", []), paths):
            assert members[suffix] == (root / path).read_bytes()
            fmt = Image.open(io.BytesIO(members[suffix])).format
            assert suffix.endswith({"JPEG": ".jpg", "PNG": ".png"}[fmt])
        if "png_named.jpg" in str(paths):
            assert doc["images"] == ["image0.png"]


def test_plain_webdataset_reads_our_shards(reject_build) -> None:  # type: ignore[no-untyped-def]
    _, out, _, _ = reject_build
    urls = [str(p) for p in sorted(out.glob("train-*.tar"))]
    manifest = json.loads((out / "manifest.json").read_text())
    seen = 0
    for sample in wds.WebDataset(urls, shardshuffle=False).decode("pil"):
        seen += 1
        doc = sample["json"]
        for suffix in doc.get("images", []):
            assert sample[suffix].mode in ("RGB", "RGBA", "L", "P")
    assert seen == manifest["splits"]["train"]["samples"]


def test_same_build_twice_is_byte_identical(tmp_path: Path, reject_build) -> None:  # type: ignore[no-untyped-def]
    root, out, _, _ = reject_build
    again = tmp_path / "again"
    assert run_cli("build", str(config_for(tmp_path, root, again))).returncode == 0
    assert shard_bytes(out) == shard_bytes(again)
    assert (out / "manifest.json").read_bytes() == (again / "manifest.json").read_bytes()
    assert (out / "rejects.jsonl").read_bytes() == (again / "rejects.jsonl").read_bytes()


def test_rerun_of_a_finished_build_does_nothing(tmp_path: Path, reject_build) -> None:  # type: ignore[no-untyped-def]
    root, out, _, _ = reject_build
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    result = run_cli("build", str(config_for(tmp_path, root, out)))
    assert result.returncode == 0 and "nothing to do" in result.stdout
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_changed_config_refuses_to_mix_outputs(tmp_path: Path, reject_build) -> None:  # type: ignore[no-untyped-def]
    root, out, _, _ = reject_build
    cfg = config_for(tmp_path, root, out)
    refused = run_cli("build", str(cfg), "--set", "shard.max_samples=2")
    assert refused.returncode == 2
    assert "different config (shard.max_samples: 3 -> 2)" in refused.stderr
    assert "--overwrite" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    redo = run_cli("build", str(cfg), "--set", "shard.max_samples=2", "--overwrite")
    assert redo.returncode == 0, redo.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(s["samples"] <= 2 for s in manifest["splits"]["train"]["shards"])
    assert sorted(p.name for p in out.glob("*.tar")) == [s["name"] for s in manifest["splits"]["train"]["shards"]]


def test_verify_passes_then_catches_tampering(reject_build) -> None:  # type: ignore[no-untyped-def]
    _, out, _, _ = reject_build
    ok = run_cli("verify", str(out))
    assert ok.returncode == 0 and ok.stdout.startswith("OK"), ok.stdout + ok.stderr
    shard = sorted(out.glob("train-*.tar"))[1]
    data = bytearray(shard.read_bytes())
    data[600] ^= 0x01  # inside the first member's content
    shard.write_bytes(bytes(data))
    bad = run_cli("verify", str(out))
    assert bad.returncode == 1 and "sha256" in bad.stdout and shard.name in bad.stdout
    shard.unlink()
    gone = run_cli("verify", str(out))
    assert gone.returncode == 1 and f"{shard.name}: missing" in gone.stdout


def test_inspect_summarises(reject_build) -> None:  # type: ignore[no-untyped-def]
    _, out, expected, _ = reject_build
    result = run_cli("inspect", str(out))
    assert result.returncode == 0, result.stderr
    assert "train" in result.stdout and "invalid_json" in result.stdout


def test_validate_writes_rejects_only(tmp_path: Path) -> None:
    root, expected = make_reject_dataset(tmp_path / "ds", tmp_path / "outside")
    out = tmp_path / "report"
    result = run_cli("validate", str(config_for(tmp_path, root, out)))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["rejects.jsonl", "warnings.jsonl"]
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    assert {r["line"]: r["reason"] for r in rejects} == expected
    assert "validated" in result.stdout
    first = min(expected)  # the first rejects are printed with file:line
    assert f"{root / 'train.jsonl'}:{first}: {expected[first]}: " in result.stdout


def test_validate_needs_only_the_input(tmp_path: Path) -> None:
    """No output: the report goes to the terminal (and --report FILE); nothing else is written."""
    root, expected = make_reject_dataset(tmp_path / "ds", tmp_path / "outside")
    cfg = tmp_path / "only-input.yaml"
    cfg.write_text(f"input: {root}\nvalidation: {{max_image_pixels: 1000000}}\n")  # no output:
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run_cli("validate", str(cfg), "--show", "2", "--report", str(tmp_path / "bad.jsonl"),
                     cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "were not written" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before + ["bad.jsonl"])
    reported = [json.loads(x) for x in (tmp_path / "bad.jsonl").read_text().splitlines()]
    assert {r["line"]: r["reason"] for r in reported} == expected
    shown = [line for line in result.stdout.splitlines() if "train.jsonl:" in line]
    assert len(shown) == 2 and f"... and {len(reported) - 2} more" in result.stdout
    build = run_cli("build", str(cfg))
    assert build.returncode == 2 and "output: missing required key 'output'" in build.stderr


def test_on_error_fail_stops_at_the_first_bad_line(tmp_path: Path) -> None:
    root, expected = make_reject_dataset(tmp_path / "ds", tmp_path / "outside")
    out = tmp_path / "out"
    result = run_cli("build", str(config_for(tmp_path, root, out)), "--set", "validation.on_error=fail")
    first = min(expected)
    assert result.returncode == 1
    assert f"train.jsonl:{first}: {expected[first]}" in result.stderr
    assert not (out / "manifest.json").exists()


@pytest.mark.parametrize(
    ("keys", "words"),
    [
        ({"shard": {"max_smples": 3}}, "unknown key 'shard.max_smples'"),
        ({"validation": {"on_error": "explode"}}, "'validation.on_error'"),
    ],
)
def test_bad_config_exits_2_and_writes_nothing(tmp_path: Path, keys: dict[str, Any], words: str) -> None:
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "c.yaml", input=str(tmp_path), output=str(out), **keys)
    result = run_cli("build", str(cfg))
    assert result.returncode == 2 and words in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_missing_train_jsonl_exits_2(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    cfg = write_config(tmp_path / "c.yaml", input=str(tmp_path / "empty"), output=str(tmp_path / "o"),
                       executor={"kind": "local"})
    result = run_cli("build", str(cfg))
    assert result.returncode == 2 and "train.jsonl not found" in result.stderr
    missing = write_config(tmp_path / "m.yaml", input=str(tmp_path / "nope"), output=str(tmp_path / "o"))
    result = run_cli("build", str(missing))
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert result.stderr.startswith("shardify: error: input: ") and "current directory" in result.stderr


def test_kill_9_mid_build_then_rerun_is_byte_identical(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", DatasetSpec(image_samples=160, images_per_sample=2,
                                                     image_size=(320, 240), video_samples=0,
                                                     text_samples=10, test_split=False))
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    assert run_cli("build", str(config_for(tmp_path, root, clean, shard={"max_samples": 4}))).returncode == 0
    cfg = config_for(tmp_path, root, killed, shard={"max_samples": 4})
    proc = subprocess.Popen([sys.executable, "-m", "shardify", "build", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done_dir = killed / "_shardify" / "done"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(done_dir.glob("*.json")) if done_dir.exists() else []) < 3:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not (killed / "manifest.json").exists(), "the build finished before it could be killed"
    kept = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in killed.glob("*.tar")
            if (done_dir / f"{p.name}.json").exists()}
    assert kept
    rerun = run_cli("build", str(cfg))
    assert rerun.returncode == 0, rerun.stderr
    assert "resumed" in rerun.stdout
    assert shard_bytes(killed) == shard_bytes(clean)
    assert (killed / "manifest.json").read_bytes() == (clean / "manifest.json").read_bytes()
    for name, stamp in kept.items():
        path = killed / name
        assert (path.stat().st_ino, path.stat().st_mtime_ns) == stamp, f"{name} was rewritten"
    assert not [p for p in killed.iterdir() if ".tmp-" in p.name]
    # Every record below _shardify/ as a clean build leaves it; no build state, no lease left.
    assert_same_output(killed, clean)
    assert not (killed / "_shardify" / "build.json").exists()


def test_target_bytes_sizes_shards_from_media(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", DatasetSpec(image_samples=30, images_per_sample=2,
                                                     image_size=(160, 120), video_samples=0,
                                                     text_samples=0, test_split=False))
    sizes = sorted(p.stat().st_size for p in (root / "images").iterdir())
    target = 12 * (sizes[-1] + 1024) + 3_000  # room for about 5 samples of 2 images

    out = tmp_path / "out"
    cfg = config_for(tmp_path, root, out, shard={"max_samples": 1000, "target_bytes": target})
    assert run_cli("build", str(cfg)).returncode == 0
    shards = json.loads((out / "manifest.json").read_text())["splits"]["train"]["shards"]
    assert len(shards) >= 5
    for shard in shards[:-1]:
        assert 4 <= shard["samples"] <= 8
        # The estimate counts tar headers and padding; the tar's end blocks and record
        # padding (< 10240 + 1024 bytes) come on top once per shard.
        assert shard["bytes"] <= target + 10240 + 1024


def test_validate_then_build_into_the_same_output(tmp_path: Path) -> None:
    root, expected = make_reject_dataset(tmp_path / "ds", tmp_path / "outside")
    out = tmp_path / "out"
    cfg = config_for(tmp_path, root, out)
    assert run_cli("validate", str(cfg)).returncode == 0
    built = run_cli("build", str(cfg))
    assert built.returncode == 0, built.stderr
    assert (out / "manifest.json").exists()
    report = (out / "rejects.jsonl").read_text()
    again = run_cli("validate", str(cfg), "--set", "video.max_num_frames=3")
    assert again.returncode == 0 and "were not written" in again.stdout  # terminal only
    assert (out / "rejects.jsonl").read_text() == report
    assert run_cli("verify", str(out)).returncode == 0


def test_switching_on_error_resumes_without_overwrite(tmp_path: Path) -> None:
    root, expected = make_reject_dataset(tmp_path / "ds", tmp_path / "outside")
    out, clean = tmp_path / "out", tmp_path / "clean"
    failed = run_cli("build", str(config_for(tmp_path, root, out)), "--set", "validation.on_error=fail")
    assert failed.returncode == 1 and "validation.on_error: skip" in failed.stderr
    resumed = run_cli("build", str(config_for(tmp_path, root, out)))
    assert resumed.returncode == 0, resumed.stderr
    assert run_cli("build", str(config_for(tmp_path, root, clean))).returncode == 0
    assert shard_bytes(out) == shard_bytes(clean)


def test_input_that_is_a_file_exits_2(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "ds", DatasetSpec(image_samples=1, video_samples=0, text_samples=1))
    cfg = write_config(tmp_path / "c.yaml", input=str(root / "train.jsonl"), output=str(tmp_path / "o"),
                       executor={"kind": "local"})
    result = run_cli("build", str(cfg))
    assert result.returncode == 2
    assert "input:" in result.stderr and "is a file" in result.stderr


@pytest.mark.parametrize("case", ["uncreatable", "a_file", "the_input", "inside_input", "contains_input"])
def test_unusable_output_exits_2_naming_output(tmp_path: Path, case: str) -> None:
    root = make_dataset(tmp_path / "ds", DatasetSpec(image_samples=2, video_samples=0, text_samples=1))
    (tmp_path / "file.txt").write_text("x")
    output = {"uncreatable": "/proc/shardify-nope/out", "a_file": str(tmp_path / "file.txt"),
              "the_input": str(root), "inside_input": str(root / "shards"),
              "contains_input": str(tmp_path)}[case]  # fmt: skip
    before = sorted(p.name for p in root.rglob("*"))
    cfg = write_config(tmp_path / "cfg.yaml", input=str(root), output=output, executor={"kind": "local"})
    result = run_cli("build", str(cfg))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("shardify: error: output: "), result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in root.rglob("*")) == before  # nothing written into the dataset
    assert not os.path.exists("/proc/shardify-nope")


def test_reject_budget_fails_after_writing_rejects(tmp_path: Path) -> None:
    bad = [json.dumps({"messages": "nope"})] * 3
    root = make_dataset(tmp_path / "ds", DatasetSpec(image_samples=2, video_samples=0, text_samples=1,
                                                     test_split=False, extra_lines=bad))  # fmt: skip
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "cfg.yaml", input=str(root), output=str(out), executor={"kind": "local"},
                       validation={"max_reject_fraction": 0.25})  # fmt: skip
    result = run_cli("build", str(cfg))
    assert result.returncode == 1, result.stderr
    assert "3 of 6 lines rejected (50.0%), above validation.max_reject_fraction=0.25" in result.stderr
    assert "invalid_schema 3" in result.stderr
    assert len((out / "rejects.jsonl").read_text().splitlines()) == 3
    assert not (out / "manifest.json").exists()
    # Raising the budget is not a config change that forces --overwrite: the rerun finishes.
    ok = run_cli("build", str(cfg), "--set", "validation.max_reject_fraction=0.6")
    assert ok.returncode == 0, ok.stderr
    assert (out / "manifest.json").exists()
