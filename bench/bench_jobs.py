"""Jobs for bench/pipeline.py: fixed-duration sleeps and no-ops (bench/ is on the runners' PYTHONPATH)."""
import hashlib
import time


def duration_ms(slug: str) -> int:
    """A fixed duration per job, 100..400 ms, derived from its slug (so the benchmark can plan it)."""
    return 100 + int(hashlib.sha256(slug.encode()).hexdigest()[:6], 16) % 301


def sleep(ctx):
    time.sleep(duration_ms(ctx.job) / 1000.0)


def noop(ctx):
    return None
