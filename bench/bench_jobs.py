"""Jobs for bench/pipeline.py: fixed-duration sleeps and no-ops (bench/ is on the runners' PYTHONPATH)."""
import hashlib
import os
import time


def duration_ms(slug: str) -> int:
    """A fixed duration per job, 100..400 ms, derived from its slug (so the benchmark can plan it),
    times BENCH_DURATION_SCALE (bench/pipeline.py --scale; the runners inherit it)."""
    base = 100 + int(hashlib.sha256(slug.encode()).hexdigest()[:6], 16) % 301
    return round(base * float(os.environ.get("BENCH_DURATION_SCALE", "1")))


def sleep(ctx):
    time.sleep(duration_ms(ctx.job) / 1000.0)


def noop(ctx):
    return None
