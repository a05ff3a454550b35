"""S3 benchmarks on moto's S3 server (127.0.0.1): what reading and writing through S3 costs.

- ``s3_build_vs_raw_get``: ``shardify build`` S3 -> S3 (local executor, fresh process)
  against a fresh process that only GETs every input object once with boto3, one after
  the other (the floor for one process reading the data). It guards the storage layer
  against extra requests and lost read-ahead. The local -> local build of the same data is
  reported too (raw ``local_s``): on moto, a Python server sharing the 2 cores, every
  request costs ~10 ms, so that gap is mostly moto.
- ``s3_faults_vs_clean``: the same S3 build through the fault-injecting proxy failing 2% of
  requests, against the proxy failing none (the proxy's own cost cancels): what retries
  and backoff cost.

``python scripts/bench_s3.py [--smoke]`` prints the results as JSON.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO))
from benchlib import CaseResult, run_standalone  # noqa: E402

log = logging.getLogger("bench.s3")
FAULT_RATE = 0.02


def build(config: dict[str, Any], path: Path) -> float:
    """Wall time of ``python -m shardify build`` in a fresh process."""
    path.write_text(json.dumps(config))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "shardify", "build", str(path)],
                          capture_output=True, text=True, timeout=900, cwd=REPO)  # fmt: skip
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"shardify build failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return elapsed


RAW_GET = """
import sys, boto3
client = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
pages = client.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[2], Prefix=sys.argv[3])
for key in [item["Key"] for page in pages for item in page.get("Contents", [])]:
    client.get_object(Bucket=sys.argv[2], Key=key)["Body"].read()
"""


def raw_get(endpoint: str, bucket: str, prefix: str) -> float:
    """Wall time of a fresh process GETting every object below ``prefix`` once."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", RAW_GET, endpoint, bucket, prefix], check=True, timeout=900)
    return time.perf_counter() - started


def run(workdir: Path, smoke: bool) -> list[CaseResult]:
    from moto.server import ThreadedMotoServer

    from shardify.datagen import DatasetSpec, make_dataset
    from tests.fixtures.s3 import _ENV, FaultProxy, S3Server, upload_tree

    os.environ.update(_ENV)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    samples, repeat = (12, 1) if smoke else (200, 3)
    shutil.rmtree(workdir, ignore_errors=True)
    root = make_dataset(workdir / "ds", DatasetSpec(image_samples=samples, video_samples=0,
                                                    text_samples=0, image_size=(640, 480),
                                                    test_split=False))  # fmt: skip
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    proxy = None
    try:
        host, port = server.get_host_and_port()
        s3 = S3Server(endpoint=f"http://{host}:{port}", port=port)
        proxy = FaultProxy(port, seed=1)
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        s3.client().create_bucket(Bucket=bucket)
        upload_tree(s3, root, bucket, "ds")
        base = {"executor": {"kind": "local"}, "shard": {"max_samples": 50},
                "validation": {"decode": "header"}}  # fmt: skip

        def s3_run(endpoint: str, rate: float) -> float:
            assert proxy is not None
            proxy.fail_rate = rate
            out = f"s3://{bucket}/out-{uuid.uuid4().hex[:8]}"
            return build({**base, "input": f"s3://{bucket}/ds", "output": out,
                          "storage_options": {"endpoint_url": endpoint}}, workdir / "s3.json")  # fmt: skip

        def local_run() -> float:
            shutil.rmtree(workdir / "out", ignore_errors=True)
            return build({**base, "input": str(root), "output": str(workdir / "out")}, workdir / "l.json")

        times = dict.fromkeys(("raw_get", "local", "s3", "proxy_clean", "proxy_faults"), 1e9)
        for _ in range(repeat):  # interleaved, best of: the machine is shared
            times["raw_get"] = min(times["raw_get"], raw_get(s3.endpoint, bucket, "ds/"))
            times["local"] = min(times["local"], local_run())
            times["s3"] = min(times["s3"], s3_run(s3.endpoint, 0.0))
            times["proxy_clean"] = min(times["proxy_clean"], s3_run(proxy.endpoint, 0.0))
            before = dict(proxy.counts)
            times["proxy_faults"] = min(times["proxy_faults"], s3_run(proxy.endpoint, FAULT_RATE))
            injected = sum(proxy.counts[f] - before.get(f, 0) for f in FaultProxy.FAULTS)
            log.info("times %s; %d faults injected in the last faulty run", times, injected)
        requests = proxy.counts["requests"] / max(1, 2 * repeat)
    finally:
        if proxy is not None:
            proxy.close()
        server.stop()
    note = "smoke: tiny data" if smoke else ""
    raw = {**{f"{k}_s": round(v, 3) for k, v in times.items()}, "samples": samples,
           "images": 2 * samples, "requests_per_build": round(requests)}  # fmt: skip
    return [
        CaseResult(name="s3_build_vs_raw_get", ratio=times["s3"] / times["raw_get"], target="<= 3.0",
                   meaning="S3->S3 build on moto (local executor) / boto3 GET of every input object, "
                           "both fresh processes",
                   raw=raw, note=note),  # fmt: skip
        CaseResult(name="s3_faults_vs_clean", ratio=times["proxy_faults"] / times["proxy_clean"],
                   target="<= 2.0", raw=raw, note=note,
                   meaning=f"S3 build with {FAULT_RATE:.0%} of requests failing / with none (same proxy)"),  # fmt: skip
    ]


if __name__ == "__main__":
    sys.exit(run_standalone(run, "s3", __doc__))
