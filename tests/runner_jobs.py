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


def _record_call(ctx, table: str = "test_calls") -> None:
    """Proof of work: one row per execution, written on its own connection (commits at once)."""
    import json
    import os

    import psycopg
    with psycopg.connect(os.environ["ETL_DSN"], autocommit=True) as conn:
        conn.execute(f"insert into public.{table} (run_id, attempt_no, item_no, params) values (%s, %s, %s, %s)",
                     (ctx.run_id, ctx.attempt_no, ctx.item_no, json.dumps(ctx.params)))


def item_call(ctx):
    """An item job: records the call, reads as many records as the item's 'n', moves its cursor."""
    _record_call(ctx)
    if ctx.params.get("fail") == "permanent":
        raise ValueError(f"item {ctx.item_no}: bad region")
    if ctx.params.get("fail") == "first_attempt" and ctx.attempt_no == 1:
        raise JobError("upstream said 503", category="API", http_status=503)
    ctx.count("records_read", int(ctx.params.get("n", 1)))
    if "modified" in ctx.params:
        ctx.set_cursor(ctx.params["modified"], tiebreak=str(ctx.item_no))


def slow_item(ctx):
    _record_call(ctx)
    time.sleep(float(ctx.params.get("seconds", 0.3)))
    ctx.count("records_read", 1)


def region_items(ctx):
    """A callable items source: one item per region, one repeated."""
    return [{"region": "eu"}, {"region": "us"}, {"region": "eu"}, {"region": "apac"}]


def item_watermark(ctx):
    """An incremental item job: the new watermark of its region is the newest row of public.test_source;
    a region listed in public.test_fail fails permanently."""
    import os

    import psycopg
    region = ctx.params["region"]
    with psycopg.connect(os.environ["ETL_DSN"], autocommit=True) as conn:
        if conn.execute("select 1 from public.test_fail where region = %s", (region,)).fetchone():
            raise ValueError(f"region {region}: source rejected the request")
        newest = conn.execute("select max(modified) from public.test_source where region = %s", (region,)).fetchone()[0]
    ctx.set_cursor(newest.isoformat())


def bad_return(ctx):
    """Returns what a job must not: ctx.params['variant'] says which mistake."""
    return {"status": {"status": "banana"}, "records": {"records_read": "lots"},
            "negative": {"records_written": -5}}[ctx.params["variant"]]


def bad_cursor(ctx):
    """Passes the runner's checks; the engine refuses the cursor (not a timestamp) when it is reported."""
    ctx.set_cursor("next tuesday-ish")


def leaky_crash(ctx):
    raise RuntimeError("kaboom password=hunter2 for bob@example.com")


def deaf(ctx):
    """Ignores cancellation: sleeps its seconds whatever happens."""
    time.sleep(float(ctx.params.get("seconds", 20)))


def sleep_then_ok(ctx):
    time.sleep(float(ctx.params.get("seconds", 1)))
    ctx.count("records_read", 1)


def item_leaks_secret(ctx):
    """An item failing with credentials in its message (the runner must redact them)."""
    raise ValueError(f"item {ctx.params.get('k')}: https://svc:S3cretPw@api.example/x refused, password=hunter2")


def debug_chatty(ctx):
    ctx.log.debug("the detail", fields={"action": "detail"})
    ctx.log.info("the gist", fields={"action": "gist"})
