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

At real object-store latency (issue 13), through a proxy that holds every response until
30 ms after its request arrived and paces bodies at 80 MB/s per connection, over >= 1000
photo-sized JPEGs (50-150 KB, one per sample, ``validation.decode: header``):

- ``s3_latency_build_vs_threaded_get``: the S3 -> S3 build with the default executor (a
  fresh ``shardify build`` starting its private local Ray) against a fresh process that
  GETs the same input objects with 32 boto3 threads through the same proxy. Also reported
  raw: the build with the local executor, and with ``io.max_concurrency: 1`` (the old
  serial reads), and the proxy's most requests in flight during each run. And the local
  build with s3fs's connection pool raised from botocore's 10 to 64
  (``storage_options.config_kwargs.max_pool_connections``): the pool, not
  ``io.max_concurrency``, caps one process's reads in flight at 10.
- ``s3_latency_target_bytes``: the same default-executor build with ``shard.target_bytes``
  set / without it (the driver sizes shards from the media files' sizes).

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
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO))
from benchlib import CaseResult, run_standalone  # noqa: E402

log = logging.getLogger("bench.s3")
FAULT_RATE = 0.02


def build(config: dict[str, Any], path: Path, env: Optional[dict[str, str]] = None) -> float:
    """Wall time of ``python -m shardify build`` in a fresh process."""
    path.write_text(json.dumps(config))
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "shardify", "build", str(path)],
                          capture_output=True, text=True, timeout=900, cwd=REPO, env=env)  # fmt: skip
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
    """Every case on one moto server (127.0.0.1), each with its own bucket and proxy."""
    from moto.server import ThreadedMotoServer

    from tests.fixtures.s3 import _ENV, S3Server

    os.environ.update(_ENV)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        s3 = S3Server(endpoint=f"http://{host}:{port}", port=port)
        return moto_cases(workdir, smoke, s3) + latency_cases(workdir, smoke, s3)
    finally:
        server.stop()


def moto_cases(workdir: Path, smoke: bool, s3: Any) -> list[CaseResult]:
    """``s3_build_vs_raw_get`` and ``s3_faults_vs_clean``: moto as fast as it answers."""
    from shardify.datagen import DatasetSpec, make_dataset
    from tests.fixtures.s3 import FaultProxy, upload_tree

    samples, repeat = (12, 1) if smoke else (200, 3)
    root = make_dataset(workdir / "ds", DatasetSpec(image_samples=samples, video_samples=0,
                                                    text_samples=0, image_size=(640, 480),
                                                    test_split=False))  # fmt: skip
    proxy = FaultProxy(s3.port, seed=1)
    try:
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        s3.client().create_bucket(Bucket=bucket)
        upload_tree(s3, root, bucket, "ds")
        base = {"executor": {"kind": "local"}, "shard": {"max_samples": 50},
                "validation": {"decode": "header"}}  # fmt: skip

        def s3_run(endpoint: str, rate: float) -> float:
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
        proxy.close()
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


# --- at object-store latency (issue 13) ----------------------------------------------------

FIRST_BYTE_S = 0.030
BANDWIDTH_BPS = 80e6
GET_THREADS = 32
IMAGE_SIZES = ((1024, 768), (1280, 960), (1600, 1200))
"""make_image at JPEG quality 95 gives 59-77, 86-98 and 111-130 KB: photo-sized objects."""
IMAGE_KB = (50, 150)
# A fresh ``shardify build`` with the default executor starts a private local Ray; these keep
# it on loopback, quiet and without token files (as the test suite does). No RAY_ADDRESS:
# the build must not join a cluster someone left running.
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "disabled"}  # fmt: skip

THREADED_GET = """
import sys
from concurrent.futures import ThreadPoolExecutor
import boto3
from botocore.config import Config
endpoint, bucket, prefix, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      config=Config(max_pool_connections=threads))
pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
def get(key):
    return len(client.get_object(Bucket=bucket, Key=key)["Body"].read())
with ThreadPoolExecutor(threads) as pool:
    print(len(keys), sum(pool.map(get, keys)))
"""


def threaded_get(endpoint: str, bucket: str, prefix: str) -> tuple[float, int, int]:
    """Wall time of a fresh process GETting every object below ``prefix`` with 32 threads;
    with the objects and bytes it read."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", THREADED_GET, endpoint, bucket, prefix, str(GET_THREADS)],
                          check=True, timeout=900, capture_output=True, text=True)  # fmt: skip
    elapsed = time.perf_counter() - started
    objects, nbytes = proc.stdout.split()
    return elapsed, int(objects), int(nbytes)


def make_photo_dataset(root: Path, samples: int) -> list[int]:
    """``samples`` lines of one photo-sized JPEG each; the images' sizes in bytes."""
    from shardify.datagen import chat, image_item, make_image, text_item

    (root / "images").mkdir(parents=True)
    sizes, lines = [], []
    for n in range(samples):
        width, height = IMAGE_SIZES[n % len(IMAGE_SIZES)]
        data = make_image(width, height, seed=n, quality=95)
        if not IMAGE_KB[0] * 1000 <= len(data) <= IMAGE_KB[1] * 1000:
            raise ValueError(f"image {n} is {len(data)} bytes, outside {IMAGE_KB} KB: fix IMAGE_SIZES")
        path = f"images/photo_{n:05d}.jpg"
        (root / path).write_bytes(data)
        sizes.append(len(data))
        doc = {"messages": chat([image_item(), text_item(f"What is in photo {n}?")], "Shapes."),
               "images": [path]}  # fmt: skip
        lines.append(json.dumps(doc))
    (root / "train.jsonl").write_text("\n".join(lines) + "\n")
    return sizes


class LatencyBench:
    """One photo dataset on moto behind a 30 ms / 80 MB/s proxy, and the runs timed against it.

    Every run keeps its best wall time (``times``), the proxy's most requests in flight
    (``in_flight``, one entry per run) and, for builds, the shards it wrote (checked in
    manifest.json, read from moto directly: every sample written, none rejected).
    """

    def __init__(self, workdir: Path, s3: Any, proxy: Any, bucket: str, samples: int, max_samples: int) -> None:
        self.workdir, self.s3, self.proxy, self.bucket = workdir, s3, proxy, bucket
        self.samples, self.max_samples = samples, max_samples
        self.times: dict[str, float] = {}
        self.in_flight: dict[str, list[int]] = {}
        self.shards: dict[str, int] = {}
        self.requests: dict[str, int] = {}
        """Requests the proxy received during the last run of each kind (GET, PUT, LIST...)."""
        self.fetched: tuple[int, int] = (0, 0)

    def _record(self, name: str, seconds: float, requests_before: int) -> None:
        self.times[name] = min(self.times.get(name, 1e9), seconds)
        self.requests[name] = self.proxy.counts["requests"] - requests_before
        self.in_flight.setdefault(name, []).append(self.proxy.max_in_flight)
        log.info("%s: %.2f s, %d requests in flight at most", name, seconds, self.proxy.max_in_flight)

    def get_all(self) -> None:
        self.proxy.max_in_flight = 0
        before = self.proxy.counts["requests"]
        seconds, objects, nbytes = threaded_get(self.proxy.endpoint, self.bucket, "photos/")
        self.fetched = (objects, nbytes)
        self._record("threaded_get", seconds, before)

    def build(self, name: str, executor: str, **keys: Any) -> None:
        """Time one S3 -> S3 build through the proxy; ``keys`` are extra config sections."""
        out = f"out-{uuid.uuid4().hex[:8]}"
        shard = {"max_samples": self.max_samples, **keys.pop("shard", {})}
        config = {"executor": {"kind": executor}, "shard": shard, "validation": {"decode": "header"},
                  "input": f"s3://{self.bucket}/photos", "output": f"s3://{self.bucket}/{out}",
                  "storage_options": {"endpoint_url": self.proxy.endpoint}, **keys}  # fmt: skip
        env = None
        if executor == "ray":
            env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | RAY_ENV
        self.proxy.max_in_flight = 0
        before = self.proxy.counts["requests"]
        seconds = build(config, self.workdir / f"{name}.json", env)
        self._record(name, seconds, before)
        self.shards[name] = self._check(out)
        drop_prefix(self.s3.client(), self.bucket, f"{out}/")

    def _check(self, out: str) -> int:
        """The shards of the build in ``out``; an error unless it wrote every sample."""
        from tests.fixtures.s3 import get_object

        train = json.loads(get_object(self.s3, self.bucket, f"{out}/manifest.json"))["splits"]["train"]
        if train["samples"] != self.samples or train["rejected"]:
            raise RuntimeError(f"{out}: {train['samples']} samples, {train['rejected']} rejected "
                               f"({train['rejects_by_reason']}); expected {self.samples}, none")  # fmt: skip
        return len(train["shards"])


def drop_prefix(client: Any, bucket: str, prefix: str) -> None:
    """Delete a build's output from moto (it keeps every object in this process's memory)."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys})


def try_ray(bench: LatencyBench, name: str, errors: list[str], **keys: Any) -> None:
    """A Ray build; a failure or hang is kept in ``errors`` (its stderr tail), not raised."""
    try:
        bench.build(name, "ray", **keys)
        return
    except subprocess.TimeoutExpired as exc:
        tail = exc.stderr[-2000:] if isinstance(exc.stderr, str) else (exc.stderr or b"")[-2000:].decode()
        errors.append(f"{name}: no end after {exc.timeout:.0f} s; stderr tail: {tail}")
    except RuntimeError as exc:
        errors.append(f"{name}: {exc}")
    log.error("the Ray build failed: %s", errors[-1])


def latency_cases(workdir: Path, smoke: bool, s3: Any) -> list[CaseResult]:
    """``s3_latency_build_vs_threaded_get`` and ``s3_latency_target_bytes``."""
    from tests.fixtures.s3 import FaultProxy, upload_tree

    samples, rounds, target_bytes = (40, 1, 800_000) if smoke else (1000, 2, 20_000_000)
    sizes = make_photo_dataset(workdir / "photos", samples)
    proxy = FaultProxy(s3.port, first_byte_s=FIRST_BYTE_S, bandwidth_bps=BANDWIDTH_BPS)
    try:
        bucket = f"latency-{uuid.uuid4().hex[:8]}"
        s3.client().create_bucket(Bucket=bucket)
        upload_tree(s3, workdir / "photos", bucket, "photos")
        bench = LatencyBench(workdir, s3, proxy, bucket, samples, max_samples=samples // 4)
        ray_errors: list[str] = []
        for _ in range(rounds):  # interleaved, best of: the machine is shared
            bench.get_all()
            if not smoke and not ray_errors:
                try_ray(bench, "ray", ray_errors)
            bench.build("local", "local")
            bench.build("local_serial", "local", io={"max_concurrency": 1})
            if not smoke:  # s3fs's client holds 10 connections: does lifting that cap help?
                bench.build("local_pool64", "local", storage_options={
                    "endpoint_url": proxy.endpoint, "config_kwargs": {"max_pool_connections": 64}})  # fmt: skip
            if not smoke and not ray_errors:
                try_ray(bench, "ray_target", ray_errors, shard={"target_bytes": target_bytes})
            if smoke or ray_errors:
                bench.build("local_target", "local", shard={"target_bytes": target_bytes})
    finally:
        proxy.close()
    return latency_results(bench, sizes, target_bytes, smoke, ray_errors)


def latency_results(bench: LatencyBench, sizes: list[int], target_bytes: int, smoke: bool,
                    ray_errors: list[str]) -> list[CaseResult]:  # fmt: skip
    """The two cases from the runs' figures; the Ray side falls back to the local executor
    when no Ray build succeeded (smoke, or a failure: the note says which)."""
    times = bench.times
    main = "ray" if "ray" in times and "ray_target" in times else "local"
    objects, nbytes = bench.fetched
    raw: dict[str, Any] = {
        **{f"{k}_s": round(v, 3) for k, v in times.items()},
        "executor": main, "samples": bench.samples, "images": len(sizes),
        "image_kb_min_mean_max": [round(min(sizes) / 1e3), round(sum(sizes) / len(sizes) / 1e3),
                                  round(max(sizes) / 1e3)],
        "objects_fetched": objects, "mb_fetched": round(nbytes / 1e6, 1),
        "first_byte_ms": FIRST_BYTE_S * 1e3, "mb_per_s_per_connection": BANDWIDTH_BPS / 1e6,
        "get_threads": GET_THREADS, "max_samples": bench.max_samples, "target_bytes": target_bytes,
        "shards": bench.shards, "proxy_max_in_flight": bench.in_flight,
        "proxy_requests": bench.requests,
        **{f"{k}_vs_threaded_get": round(v / times["threaded_get"], 2) for k, v in times.items()
           if k.startswith(("ray", "local"))},
    }  # fmt: skip
    notes = []
    if smoke:
        notes.append(f"smoke: {bench.samples} images, local executor only (no Ray start)")
    if ray_errors:
        notes.append("Ray build failed, local executor reported instead: " + " | ".join(ray_errors))
    note = "; ".join(notes)
    return [
        CaseResult(name="s3_latency_build_vs_threaded_get", ratio=times[main] / times["threaded_get"],
                   target="<= 1.5", raw=raw, note=note,
                   meaning=f"S3->S3 build ({main} executor) / {GET_THREADS}-thread boto3 GET of the same "
                           f"input objects, both fresh processes, through a {FIRST_BYTE_S * 1e3:.0f} ms "
                           f"first-byte, {BANDWIDTH_BPS / 1e6:.0f} MB/s proxy"),  # fmt: skip
        CaseResult(name="s3_latency_target_bytes", ratio=times[f"{main}_target"] / times[main],
                   target="<= 1.2", raw=raw, note=note,
                   meaning=f"the same build ({main} executor) with shard.target_bytes = "
                           f"{target_bytes / 1e6:g} MB / without it"),  # fmt: skip
    ]


if __name__ == "__main__":
    sys.exit(run_standalone(run, "s3", __doc__))
