"""Python jobs used by the runner tests (importable as runner_jobs: tests/ is on PYTHONPATH)."""
import time

from python_runner.context import JobError


def ok(ctx):
    ctx.count("records_read", 3)
    ctx.count("records_written", 2)
    ctx.log.info("ok ran", fields={"action": "extract"})


def flaky(ctx):
    if ctx.attempt_no == 1:
        raise JobError("upstream said 503", category="API", http_status=503)
    ctx.count("records_read", 1)


def bad_data(ctx):
    raise ValueError("row 7: amount is not a number")


def slow(ctx):
    deadline = time.monotonic() + float(ctx.params.get("seconds", 1))
    while time.monotonic() < deadline:
        ctx.check_cancelled()
        time.sleep(0.05)


def chatty(ctx):
    ctx.log.info("connecting with password=hunter2 as ops@example.com", fields={"action": "connect"})
    ctx.log.warning("slow page", fields={"action": "page", "page": 3, "api_key": "abc123"})


def slow_chatty(ctx):
    for i in range(5):
        ctx.log.info(f"step {i}", fields={"action": "step", "step": i})
        time.sleep(0.2)
