"""The run's knobs (read once from the environment, see the package docstring), paths and fixed shapes."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
IMG = ROOT / "docs" / "img"
PY = sys.executable

SUT_CORE, LOAD_CORE = 0, 1
EMAIL = "bench@example.com"
AUDIENCE = "/projects/111/global/backendServices/222"
TENANT = "bench"
RAY_TOKEN = "bench-ray-token"
SMALL_PATH = "/api/version"
DOWNLOAD_PATH = "/static/js/bench-1mib.js"
UPLOAD_PATH = "/api/packages/gcs/_ray_pkg_bench.zip"
DOWNLOAD_BYTES = 1 << 20  # what bench/upstream.py streams for any /static/ path
UPLOAD_BYTES = 16 << 20
TOKEN_HEADER = "x-goog-iap-jwt-assertion"
MAX_BULK_TRANSFERS = 200  # per measurement, whatever the time budget


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


def env_list(name: str, default: str) -> list[str]:
    return [x.strip() for x in os.environ.get(name, default).split(",") if x.strip()]


SECONDS = env_int("BENCH_SECONDS", 10)
CONCURRENCY = [int(c) for c in env_list("BENCH_CONCURRENCY", "1,32,64")]
MISS_CONCURRENCY = [int(c) for c in env_list("BENCH_MISS_CONCURRENCY", "1,32")]
WARMUP = env_int("BENCH_WARMUP", 1)
BULK_SECONDS = env_int("BENCH_BULK_SECONDS", 3)
TARGETS = env_list("BENCH_TARGETS", "direct,proxy,apache")
PROFILE = os.environ.get("BENCH_PROFILE", "1") == "1"
GIB_BYTES = env_int("BENCH_STREAM_MIB", 1024) << 20  # the streamed GET and PUT
WEBSOCKETS = env_int("BENCH_WEBSOCKETS", 1000)  # idle WebSockets through the proxy (0: skip)
WORKERS = os.environ.get("BENCH_WORKERS", "1") == "1"  # the --workers 1 vs 2 point
RAY = os.environ.get("BENCH_RAY", "1") == "1"  # the real Ray head point
NICE = env_int("BENCH_NICE", -10 if os.geteuid() == 0 else 0)
KEEP = os.environ.get("BENCH_KEEP") == "1"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)
