"""`make demo`: make a small dataset with images and videos, build it, read it back.

Everything lands in ./demo/ (dataset/, config.yaml, shards/). Run it again to start over.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml

from shardify.datagen import DatasetSpec, chat, image_item, make_dataset

DEMO = Path("demo")


def main() -> int:
    if DEMO.exists():
        shutil.rmtree(DEMO)
    bad_lines = [
        '{"messages": [{"role": "user", "content": []}],}',  # trailing comma: invalid_json
        '{"messages": ' + chat_json() + ', "images": ["images/missing.jpg"]}',  # missing_file
    ]
    root = make_dataset(DEMO / "dataset", DatasetSpec(image_samples=40, video_samples=6,
                                                      text_samples=6, extra_lines=bad_lines))
    print(f"1/3 dataset: {root} (train.jsonl, test.jsonl, images/, videos/)")
    config = DEMO / "config.yaml"
    config.write_text(yaml.safe_dump({"input": str(root), "output": str(DEMO / "shards"),
                                      "shard": {"max_samples": 16}}, sort_keys=False))
    print(f"2/3 shardify build {config}   (Ray starts locally on 127.0.0.1)")
    subprocess.run([sys.executable, "-m", "shardify", "build", str(config)], check=True)
    print(f"3/3 reading {DEMO / 'shards'} back with shardify.ShardDataset")
    read_back(DEMO / "shards")
    return 0


def chat_json() -> str:
    import json

    return json.dumps(chat([image_item()], "a missing picture"))


def read_back(url: Path) -> None:
    from shardify import ShardDataset

    dataset = ShardDataset(str(url), split="train", shuffle=True, seed=0)
    kinds: Counter[str] = Counter()
    first_video = None
    for sample in dataset:
        kind = "video" if "video" in sample else ("image" if sample["images"] else "text")
        kinds[kind] += 1
        if kind == "video" and first_video is None:
            first_video = sample
    print(f"    read {sum(kinds.values())} samples (len(ds) = {len(dataset)}): "
          + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
    if first_video is not None:
        sizes = {image.size for image in first_video["images"]}
        types = [item["type"] for m in first_video["messages"] for item in m["content"]]
        print(f"    video sample {first_video['key']}: {len(first_video['images'])} RGB frames "
              f"{sizes}, content items {types}")
    print(f"    next: .venv/bin/shardify inspect {url} --html report.html ; "
          f".venv/bin/shardify verify {url}")


if __name__ == "__main__":
    sys.exit(main())
