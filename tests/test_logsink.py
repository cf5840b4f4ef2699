"""Redaction rules and the etl.run_logs handler (batching, ids, redaction, close, unreachable DB)."""
from __future__ import annotations

import copy
import io
import json
import logging
import time
import uuid

import pytest

from python_runner.logsink import RedactingFilter, RunLogHandler, ensure_redacting, level_name
from python_runner.redact import redact, redact_text
from python_runner.runner import FieldsAdapter, JsonFormatter

JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ."
       "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")


# ------------------------------------------------------------------ redact()

def test_redact_nested_secret_keys_case_insensitive_substring():
    value = {"user": "ann", "DB_Password": "hunter2", "nested": {"x-api-key": "k", "Authorization": "Basic abc",
             "list": [{"session_cookie": "c"}, {"refresh_token": {"deep": 1}}], "passwd": 5},
             "client_secret": "s", "AWS_ACCESS_KEY_ID": "AKIA", "private_key": "-----BEGIN",
             "apikey": "z", "sessionid": "q", "ok": 1, "pwd": "p", "db_pass": "p", "credentials": {"u": 1},
             "passengers": 12, "passed": True}
    out, changed = redact(value)
    assert changed
    assert out == {"user": "ann", "DB_Password": "[REDACTED]",
                   "nested": {"x-api-key": "[REDACTED]", "Authorization": "[REDACTED]",
                              "list": [{"session_cookie": "[REDACTED]"}, {"refresh_token": "[REDACTED]"}],
                              "passwd": "[REDACTED]"},
                   "client_secret": "[REDACTED]", "AWS_ACCESS_KEY_ID": "[REDACTED]",
                   "private_key": "[REDACTED]", "apikey": "[REDACTED]", "sessionid": "[REDACTED]", "ok": 1,
                   "pwd": "[REDACTED]", "db_pass": "[REDACTED]", "credentials": "[REDACTED]",
                   "passengers": 12, "passed": True}


@pytest.mark.parametrize("text, expected", [
    ("calling with Bearer abc123.def-456_ghi", "calling with Bearer [REDACTED]"),
    ("authorization: bearer xyz==", "authorization: bearer [REDACTED]"),
    ("Authorization: Bearer abc", "Authorization: Bearer [REDACTED]"),
    ("mail ann.lee+etl@example.co.uk about it", "mail [EMAIL] about it"),
    ("login failed password=hunter2 for ann", "login failed password=[REDACTED] for ann"),
    ("db_password: s3cret, retry", "db_password: [REDACTED], retry"),
    ('payload {"api_key": "abc", "n": 1}', 'payload {"api_key": "[REDACTED]", "n": 1}'),
    ("GET /v1?api-key=abc&page=2", "GET /v1?api-key=[REDACTED]&page=2"),
    ("token=" + JWT, "token=[REDACTED]"),
    ("got " + JWT + " back", "got [REDACTED] back"),
    ("postgresql://etl:pw123@db.internal:5432/dw", "postgresql://etl:[REDACTED]@db.internal:5432/dw"),
    ("pwd=hunter3 pass=hunter4 credentials=hunter5",
     "pwd=[REDACTED] pass=[REDACTED] credentials=[REDACTED]"),
    ("db_pass: x1, X-Pass=x2", "db_pass: [REDACTED], X-Pass=[REDACTED]"),
])
def test_redact_text_patterns(text, expected):
    out, changed = redact_text(text)
    assert (out, changed) == (expected, True)


@pytest.mark.parametrize("text", [
    "loaded 42 rows into staging.orders.created_at", "nothing to see", "", "3.14 ratio: 0.5",
    "passengers=12 passed=3 bypass=on compass: north",
    "password=[REDACTED]", "Bearer [REDACTED]", "[EMAIL]",
])
def test_redact_text_leaves_clean_text_alone(text):
    assert redact_text(text) == (text, False)


def test_redact_nothing_to_redact_returns_equal_value_and_false():
    value = {"action": "load", "rows": 10, "tables": ["a", "b"], "ratio": 0.5, "none": None,
             "t": (1, "x"), "password": None}
    out, changed = redact(value)
    assert changed is False
    assert out == value
    assert out is not value  # a copy: the caller may change it freely
    assert redact(7) == (7, False) and redact(None) == (None, False) and redact("ok") == ("ok", False)


def test_redact_does_not_mutate_input():
    value = {"token": "t", "items": [{"email": "a@b.io", "password": "p"}, "Bearer q"], "msg": "x"}
    before = copy.deepcopy(value)
    out, changed = redact(value)
    assert changed
    assert value == before
    assert out["items"][0] == {"email": "[EMAIL]", "password": "[REDACTED]"}
    assert out["items"][1] == "Bearer [REDACTED]"


def test_redact_survives_reference_cycles():
    value: dict = {"a": 1}
    value["self"] = value
    out, _ = redact(value)
    assert out == {"a": 1, "self": "[CYCLE]"}


def test_level_mapping():
    rec = logging.LogRecord("x", logging.WARNING, __file__, 1, "m", (), None)
    rec.levelname = "WARN"
    assert level_name(rec) == "WARNING"
    rec.levelname, rec.levelno = "TRACE", 5
    assert level_name(rec) == "DEBUG"
    rec.levelname, rec.levelno = "NOTICE", 25
    assert level_name(rec) == "INFO"


# ------------------------------------------------------------------ helpers

def wait_until(predicate, timeout=10.0, every=0.02):
    """Poll a condition until it holds (no fixed sleep decides the outcome)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


def make_claim(conn):
    conn.execute("insert into etl.jobs (slug, name, kind, target) values ('j','j','python','m:f')")
    conn.execute("select etl.run_job('j')")
    row = conn.execute("select run_id, token from etl.claim('w', 1)").fetchone()
    job_id = conn.execute("select job_id from etl.jobs where slug = 'j'").fetchone()["job_id"]
    return job_id, row["run_id"], row["token"]


@pytest.fixture
def logger():
    log = logging.getLogger(f"etl.test.{uuid.uuid4().hex[:8]}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()


# ------------------------------------------------------------------ RunLogHandler

def test_handler_writes_rows_with_ids_and_redacts(db, logger):
    with db.connect() as conn:
        job_id, run_id, attempt_id = make_claim(conn)
        sink = RunLogHandler(db.dsn, flush_interval=0.05)
        logger.addHandler(sink)
        log = FieldsAdapter(logger, {"job": "j", "job_id": job_id, "run_id": run_id, "attempt_id": attempt_id})
        log.info("connecting with password=hunter2 as ann@example.com",
                 fields={"action": "connect", "api_token": "tok-123", "request_id": "req-1",
                         "headers": {"Authorization": "Bearer abc.def"}, "rows": 3})
        log.warning("plain %s", "message", fields={"action": "load"})
        assert sink.flush(timeout=10)
        rows = conn.execute("select * from etl.run_logs order by log_id").fetchall()
    assert len(rows) == 2
    secret, plain = rows
    assert (secret["job_id"], secret["run_id"], secret["attempt_id"], secret["item_id"]) == (job_id, run_id, attempt_id, None)
    assert secret["request_id"] == "req-1"
    assert secret["level"] == "INFO" and plain["level"] == "WARNING"
    assert secret["logger"] == logger.name
    assert secret["redacted"] is True and secret["pii_safe"] is True
    assert secret["message"] == "connecting with password=[REDACTED] as [EMAIL]"
    assert secret["fields"] == {"job": "j", "action": "connect", "api_token": "[REDACTED]",
                                "headers": {"Authorization": "[REDACTED]"}, "rows": 3}
    raw = json.dumps(secret, default=str)
    for leaked in ("hunter2", "ann@example.com", "tok-123", "abc.def"):
        assert leaked not in raw
    assert plain["message"] == "plain message" and plain["redacted"] is False
    assert plain["run_id"] == run_id and plain["fields"] == {"job": "j", "action": "load"}
    assert abs((secret["ts"].timestamp()) - time.time()) < 60


def test_rows_without_run_id_are_stored(db, logger):
    sink = RunLogHandler(db.dsn, flush_interval=0.05)
    logger.addHandler(sink)
    logger.error("no context at all")
    FieldsAdapter(logger, {}).info("string ids stay in fields", fields={"run_id": "abc"})
    assert sink.flush(timeout=10)
    with db.connect() as conn:
        rows = conn.execute("select level, message, run_id, attempt_id, fields from etl.run_logs order by log_id").fetchall()
    assert rows == [
        {"level": "ERROR", "message": "no context at all", "run_id": None, "attempt_id": None, "fields": {}},
        {"level": "INFO", "message": "string ids stay in fields", "run_id": None, "attempt_id": None,
         "fields": {"run_id": "abc"}},
    ]


def test_unknown_ids_do_not_poison_the_batch(db, logger):
    sink = RunLogHandler(db.dsn, flush_interval=0.05)
    logger.addHandler(sink)
    log = FieldsAdapter(logger, {})
    log.info("before")
    log.info("dangling", fields={"run_id": 987654321})
    log.info("after")
    assert sink.flush(timeout=10)
    with db.connect() as conn:
        rows = conn.execute("select message, run_id, fields from etl.run_logs order by log_id").fetchall()
    assert [r["message"] for r in rows] == ["before", "dangling", "after"]
    assert rows[1]["run_id"] is None and rows[1]["fields"] == {"unlinked_ids": {"run_id": 987654321}}
    assert sink.dropped == 0


def test_many_records_are_batched(db, logger):
    with db.connect() as conn:
        _, run_id, attempt_id = make_claim(conn)
        sink = RunLogHandler(db.dsn, batch_size=200, flush_interval=0.5)
        logger.addHandler(sink)
        log = FieldsAdapter(logger, {"run_id": run_id, "attempt_id": attempt_id})
        started = time.monotonic()
        for i in range(1000):
            log.debug("row %d", i, fields={"i": i})
        emitting = time.monotonic() - started
        count = lambda: conn.execute("select count(*) as n from etl.run_logs where run_id = %s",  # noqa: E731
                                     (run_id,)).fetchone()["n"]
        assert wait_until(lambda: count() == 1000, timeout=5.0), count()
        assert emitting < 2.0  # emit only queues
        got = conn.execute("select min((fields->>'i')::int) as lo, max((fields->>'i')::int) as hi, "
                           "count(distinct attempt_id) as attempts from etl.run_logs").fetchone()
    assert got == {"lo": 0, "hi": 999, "attempts": 1}
    assert sink.written == 1000 and sink.dropped == 0


def test_close_flushes_what_is_left(db, logger):
    sink = RunLogHandler(db.dsn, batch_size=10_000, flush_interval=60)  # nothing written on its own
    logger.addHandler(sink)
    for i in range(50):
        logger.info("pending %d", i)
    assert sink.pending == 50
    started = time.monotonic()
    logger.removeHandler(sink)
    sink.close()
    assert time.monotonic() - started < sink.close_timeout
    with db.connect() as conn:
        assert conn.execute("select count(*) as n from etl.run_logs").fetchone()["n"] == 50
    sink.close()  # idempotent


def test_unreachable_database_never_blocks(logger):
    err = io.StringIO()
    sink = RunLogHandler("host=127.0.0.1 port=1 dbname=nothing user=nobody connect_timeout=2",
                         batch_size=50, flush_interval=0.01, max_queue=500, close_timeout=1.0, stderr=err)
    logger.addHandler(sink)
    started = time.monotonic()
    for i in range(5000):
        logger.info("record %d password=pw%d", i, i)
    assert time.monotonic() - started < 3.0
    assert sink.pending <= 500
    assert wait_until(lambda: sink.failing, timeout=5.0)
    assert sink.dropped >= 4500
    assert sink.flush(timeout=0.2) is False
    logger.removeHandler(sink)
    started = time.monotonic()
    sink.close()
    assert time.monotonic() - started < 1.0 + 0.5
    lines = [json.loads(line) for line in err.getvalue().splitlines()]
    failures = [x for x in lines if x["message"].startswith("cannot write")]
    assert len(failures) == 1  # logged once, not once per retry
    assert "pw1" not in err.getvalue()


# ------------------------------------------------------------------ RedactingFilter

def test_redacting_filter_runs_before_every_handler(db, logger):
    stream = io.StringIO()
    text_handler = logging.StreamHandler(stream)
    text_handler.setFormatter(JsonFormatter())
    sink = RunLogHandler(db.dsn, flush_interval=0.05)
    logger.addHandler(text_handler)
    logger.addHandler(sink)
    assert ensure_redacting(logger) is logger
    ensure_redacting(FieldsAdapter(logger, {}))
    assert sum(isinstance(f, RedactingFilter) for f in logger.filters) == 1
    caller_fields = {"secret": "s3", "nested": {"to": "bob@example.org"}}
    log = FieldsAdapter(logger, {"action": "send"})
    try:
        raise RuntimeError("boom with token=abc123")
    except RuntimeError:
        log.exception("sending to %s with Bearer %s", "bob@example.org", "xyz", fields=caller_fields)
    assert caller_fields == {"secret": "s3", "nested": {"to": "bob@example.org"}}  # caller's dict untouched
    line = json.loads(stream.getvalue())
    assert line["message"] == "sending to [EMAIL] with Bearer [REDACTED]"
    assert line["secret"] == "[REDACTED]" and line["nested"] == {"to": "[EMAIL]"}
    assert "token=[REDACTED]" in line["exception"] and "abc123" not in stream.getvalue()
    assert sink.flush(timeout=10)
    with db.connect() as conn:
        row = conn.execute("select message, fields, redacted from etl.run_logs").fetchone()
    assert row["redacted"] is True
    assert row["message"] == line["message"]
    assert row["fields"]["secret"] == "[REDACTED]" and "abc123" not in json.dumps(row["fields"])
    assert "RuntimeError" in row["fields"]["exception"]


def test_a_burst_bigger_than_the_queue_loses_nothing_while_the_database_writes(db, logger):
    sink = RunLogHandler(db.dsn, batch_size=100, flush_interval=0.01, max_queue=200)
    logger.addHandler(sink)
    for i in range(5000):
        logger.info("burst %d", i)
    assert sink.flush(timeout=30.0)
    logger.removeHandler(sink)
    sink.close()
    assert sink.dropped == 0
    with db.connect() as conn:
        assert conn.execute("select count(*) as n from etl.run_logs where message like 'burst %%'").fetchone()["n"] == 5000
