"""Structured logs into etl.run_logs, redacted, batched, off the caller's thread.

    log = make_logger("etl.job")                      # runner.py: JSON lines to stderr
    ensure_redacting(log)                             # RedactingFilter on the logger itself
    sink = RunLogHandler(dsn)                         # batch_size=200, flush_interval=0.5
    log.addHandler(sink)
    FieldsAdapter(log, {"run_id": 7, "attempt_id": 12}).info("loaded", fields={"rows": 10})
    ...
    sink.close()                                      # flushes what is left, within close_timeout

Redaction happens before any handler: RedactingFilter is attached to the *logger* (logger filters
run before the logger hands the record to its handlers), and it rewrites the record in place —
message (msg/args folded into msg), ``record.fields`` (replaced by a redacted copy, the caller's
dict is never touched), the traceback and stack text — so the stderr JSON handler and the database
handler both see the redacted data. Logger filters do not apply to records that propagate from
child loggers; the runner's loggers do not propagate (make_logger sets propagate=False). A handler
used elsewhere can take the filter itself (handler.addFilter(RedactingFilter())). RunLogHandler
redacts again whatever reaches it, so the database never depends on the filter being installed.

RunLogHandler.emit never waits on a database that is away: it redacts, builds a row and appends it to a
bounded in-memory queue (max_queue rows). A full queue holds the logging thread up (at most
backpressure_timeout per record) while the writer is writing, so a chatty job slows down instead
of losing lines; while the database is away, the oldest rows are dropped and counted. A
daemon thread writes batches with COPY on its own autocommit connection. On a connection or server
error it writes one line to stderr (not through logging), retries with capped, jittered backoff and
writes one more line when the database is back. A batch refused for its data (a run, attempt or
item id that does not exist, for instance) is written row by row; a row whose ids are refused is
kept with the ids moved into fields["unlinked_ids"]; a row refused anyway is dropped and counted.
Records logged from the writer thread itself (psycopg's own logging) are ignored, so the sink
cannot feed itself.
"""
from __future__ import annotations

import collections
import itertools
import json
import logging
import math
import random
import sys
import threading
import time
from datetime import datetime, timezone
from typing import Any

import psycopg

from .redact import redact, redact_text

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LEVEL_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL", "CRIT": "CRITICAL", "ERR": "ERROR"}
ID_FIELDS = ("job_id", "run_id", "attempt_id", "item_id")
COLUMNS = ("ts", "level", "message", "job_id", "run_id", "attempt_id", "item_id", "request_id",
           "logger", "fields", "redacted", "pii_safe")
COPY_SQL = f"COPY etl.run_logs ({', '.join(COLUMNS)}) FROM STDIN"
INSERT_SQL = (f"INSERT INTO etl.run_logs ({', '.join(COLUMNS)}) "
              f"VALUES ({', '.join(['%s'] * len(COLUMNS))})")

_REDACTED_ATTR = "etl_redacted"  # set by RedactingFilter: the record is already redacted


def level_name(record: logging.LogRecord) -> str:
    """The etl.run_logs level for a record: its levelname, WARN -> WARNING, else by levelno."""
    name = str(record.levelname).upper()
    name = LEVEL_ALIASES.get(name, name)
    if name in LEVELS:
        return name
    n = record.levelno
    return ("CRITICAL" if n >= logging.CRITICAL else "ERROR" if n >= logging.ERROR else
            "WARNING" if n >= logging.WARNING else "INFO" if n >= logging.INFO else "DEBUG")


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # bad %-args: keep the template, never raise out of logging
        return f"{record.msg} (log arguments could not be formatted)"


def _record_fields(record: logging.LogRecord) -> dict:
    f = getattr(record, "fields", None)
    if f is None:
        return {}
    if isinstance(f, dict):
        return f
    try:
        return dict(f)
    except (TypeError, ValueError):
        return {"fields": f}


_exc_formatter = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Redacts a record in place so every handler after it sees only redacted data.

    Attach it to the logger (logger.addFilter), not to one handler, so it runs before any handler:
    record.msg becomes the redacted, formatted message and record.args (), record.fields a
    redacted copy, and an exception's traceback is formatted, redacted and kept as record.exc_text
    and fields["exception"] (exc_info is cleared, or formatters would print the raw traceback).
    record.etl_redacted tells whether anything was replaced. It never drops a record.
    """

    def __init__(self, name: str = "", redact_exceptions: bool = True):
        super().__init__(name)
        self.redact_exceptions = redact_exceptions

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, _REDACTED_ATTR, None) is not None:
            return True  # already done (the same record passing a second filtered logger)
        message, changed = redact_text(_message(record))
        record.msg, record.args = message, ()
        fields, c = redact(_record_fields(record))
        changed = changed or c
        if self.redact_exceptions and record.exc_info:
            text = record.exc_text or _exc_formatter.formatException(record.exc_info)
            text, c = redact_text(text)
            changed = changed or c
            record.exc_info, record.exc_text = None, text
            fields["exception"] = text
        elif record.exc_text:
            record.exc_text, c = redact_text(record.exc_text)
            changed = changed or c
        if record.stack_info:
            record.stack_info, c = redact_text(record.stack_info)
            changed = changed or c
        record.fields = fields
        setattr(record, _REDACTED_ATTR, changed)
        return True


def ensure_redacting(logger: logging.Logger | logging.LoggerAdapter) -> logging.Logger:
    """Attach one RedactingFilter to the logger (idempotent); returns the logger."""
    log = logger.logger if isinstance(logger, logging.LoggerAdapter) else logger
    if not any(isinstance(f, RedactingFilter) for f in log.filters):
        log.addFilter(RedactingFilter())
    return log


def _json_safe(value: Any) -> Any:
    """What jsonb accepts: no NaN/Infinity, no NUL characters, str keys, str() for the rest."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {_json_safe(str(k)): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_safe(v) for v in value]
    return _json_safe(str(value))


def _as_id(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and -2**63 <= value < 2**63:
        return value
    return None


class RunLogHandler(logging.Handler):
    """A logging handler that writes redacted records to etl.run_logs in batches.

    dsn: psycopg 3 connect string. batch_size: rows per COPY. flush_interval: seconds a row may
    wait before it is written. max_queue: rows kept while the database is away (the oldest go
    first). close_timeout: how long close() may take to write what is left. pii_safe: the value
    written to etl.run_logs.pii_safe.
    """

    def __init__(self, dsn: str, batch_size: int = 200, flush_interval: float = 0.5, *,
                 max_queue: int = 10_000, close_timeout: float = 5.0, connect_timeout: int = 5,
                 pii_safe: bool = True, level: int = logging.NOTSET,
                 application_name: str = "etl-logsink", stderr=None, backpressure_timeout: float = 10.0):
        super().__init__(level)
        if batch_size < 1 or max_queue < 1:
            raise ValueError("batch_size and max_queue must be at least 1")
        self.dsn = dsn
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.close_timeout = close_timeout
        self.backpressure_timeout = backpressure_timeout  # longest a full queue holds up a logger
        self.connect_timeout = max(2, int(connect_timeout))
        self.pii_safe = pii_safe
        self.application_name = application_name
        self._stderr = stderr
        self._queue: collections.deque[tuple[int, tuple]] = collections.deque(maxlen=max_queue)
        self._cond = threading.Condition(threading.Lock())
        self._seq = itertools.count(1)
        self._last_queued = 0      # seq of the newest row queued
        self._written_upto = 0     # every row with seq <= this is written (or dropped)
        self._flush_now = False
        self._closing = False
        self._deadline: float | None = None
        self._closed = False
        self.written = 0           # rows stored
        self.dropped = 0           # rows lost: queue overflow, refused rows, rows left at close
        self.failing = False       # the database is unreachable or refusing batches right now
        self._conn: psycopg.Connection | None = None
        self._thread = threading.Thread(target=self._run, name="etl-logsink", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ caller side

    def make_row(self, record: logging.LogRecord) -> tuple:
        """The etl.run_logs row for a record (redacted); public for tests and reuse."""
        already = getattr(record, _REDACTED_ATTR, None)
        message, changed = redact_text(_message(record))
        fields, c = redact(_record_fields(record))
        changed = changed or c or bool(already)
        fields = dict(fields)
        if record.exc_info and "exception" not in fields:
            text, c = redact_text(record.exc_text or _exc_formatter.formatException(record.exc_info))
            fields["exception"], changed = text, changed or c
        ids = {}
        for key in ID_FIELDS:
            ids[key] = _as_id(fields.get(key))
            if ids[key] is not None:
                del fields[key]
        request_id = fields.get("request_id")
        if isinstance(request_id, (str, int)) and not isinstance(request_id, bool):
            request_id = _json_safe(str(request_id))
            del fields["request_id"]
        else:
            request_id = None
        ts = datetime.fromtimestamp(record.created, tz=timezone.utc)
        return (ts, level_name(record), _json_safe(message), ids["job_id"], ids["run_id"],
                ids["attempt_id"], ids["item_id"], request_id, _json_safe(record.name),
                json.dumps(_json_safe(fields)), changed, self.pii_safe)

    def emit(self, record: logging.LogRecord) -> None:
        if threading.current_thread() is self._thread or self._closed:
            return
        try:
            row = self.make_row(record)
        except Exception as exc:  # not handleError: it would print the raw, unredacted record
            self.dropped += 1
            self._say("WARNING", "a log record could not be turned into a row and was dropped",
                      error=f"{type(exc).__name__}: {exc}"[:300], logger_name=record.name)
            return
        with self._cond:
            if len(self._queue) >= self.max_queue and not self.failing and not self._closing:
                # The writer is behind but writing: the job waits for room (a chatty job slows
                # down) rather than losing lines. Only while the database is away do rows go.
                self._cond.notify_all()
                self._cond.wait_for(lambda: len(self._queue) < self.max_queue or self.failing or self._closing,
                                    self.backpressure_timeout)
            if len(self._queue) == self.max_queue:
                self.dropped += 1  # the deque drops its oldest row on append
            seq = next(self._seq)
            self._queue.append((seq, row))
            self._last_queued = seq
            if len(self._queue) >= self.batch_size:
                self._cond.notify()

    def flush(self, timeout: float | None = None) -> bool:
        """Ask the writer to write now. With a timeout, wait up to that long for every row queued
        so far to be written; returns whether it was. Without one (logging.shutdown calls flush()
        with none), return at once."""
        with self._cond:
            target = self._last_queued
            self._flush_now = True
            self._cond.notify_all()
            if not timeout:
                return self._written_upto >= target
            return self._cond.wait_for(lambda: self._written_upto >= target, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Write what is left, within timeout (default close_timeout) seconds, then stop."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._closing = True
            self._deadline = time.monotonic() + (self.close_timeout if timeout is None else timeout)
            self._cond.notify_all()
        self._thread.join(max(0.0, self._deadline - time.monotonic()) + 0.05)
        super().close()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    # ------------------------------------------------------------------ writer thread

    def _say(self, level: str, message: str, **fields) -> None:
        """One JSON line to stderr, outside logging (the sink must not log into itself)."""
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "level": level,
               "logger": "etl.logsink", "message": message, **fields}
        try:
            stream = self._stderr or sys.stderr
            stream.write(json.dumps(redact(out)[0], default=str) + "\n")
            stream.flush()
        except Exception:
            pass

    def _connect(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=self.connect_timeout,
                                         application_name=self.application_name)
            self._conn.execute("SET statement_timeout = '30s'")
        return self._conn

    def _drop_conn(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
        self._conn = None

    def _copy(self, conn: psycopg.Connection, rows: list[tuple]) -> None:
        with conn.cursor() as cur, cur.copy(COPY_SQL) as copy:
            for row in rows:
                copy.write_row(row)

    def _write_one_by_one(self, conn: psycopg.Connection, rows: list[tuple]) -> int:
        """After a batch was refused for its data: each row alone; ids refused -> moved to fields."""
        written = 0
        for row in rows:
            try:
                conn.execute(INSERT_SQL, row)
                written += 1
                continue
            except psycopg.errors.ForeignKeyViolation:
                fields = json.loads(row[9])
                fields["unlinked_ids"] = {k: v for k, v in zip(ID_FIELDS, row[3:7]) if v is not None}
                row = row[:3] + (None, None, None, None) + row[7:9] + (json.dumps(fields),) + row[10:]
            except psycopg.OperationalError:
                raise
            except psycopg.Error as exc:
                self.dropped += 1
                self._say("WARNING", "a log row was refused and dropped", error=str(exc).strip()[:300])
                continue
            try:
                conn.execute(INSERT_SQL, row)
                written += 1
            except psycopg.OperationalError:
                raise
            except psycopg.Error as exc:
                self.dropped += 1
                self._say("WARNING", "a log row was refused and dropped", error=str(exc).strip()[:300])
        return written

    def _write(self, rows: list[tuple]) -> None:
        conn = self._connect()
        try:
            self._copy(conn, rows)
        except psycopg.OperationalError:
            raise
        except (psycopg.errors.IntegrityError, psycopg.errors.DataError):
            self.written += self._write_one_by_one(conn, rows)
        else:
            self.written += len(rows)
        self._notify(conn, rows)

    def _notify(self, conn: psycopg.Connection, rows: list[tuple]) -> None:
        """Wakes `etl logs --follow`: one NOTIFY etl_logs per run in the batch, payload the run id."""
        run_ids = sorted({row[4] for row in rows if row[4] is not None})
        if run_ids:
            try:
                conn.execute("select pg_notify('etl_logs', r::text) from unnest(%s::bigint[]) r", (run_ids,))
            except psycopg.OperationalError:
                raise
            except psycopg.Error:
                pass  # a hint only: the follower also polls

    def _run(self) -> None:
        backoff = 0.5
        failed_since: float | None = None
        while True:
            with self._cond:
                if not self._closing and len(self._queue) < self.batch_size and not self._flush_now:
                    self._cond.wait(self.flush_interval)
                closing = self._closing
                batch = list(itertools.islice(self._queue, 0, self.batch_size))
                if not batch:
                    self._flush_now = False
                    self._written_upto = self._last_queued
                    self._cond.notify_all()
                    if closing:
                        break
                    continue
            try:
                self._write([row for _, row in batch])
                if self.failing:
                    self._say("INFO", "etl.run_logs writable again",
                              down_seconds=round(time.monotonic() - failed_since, 1), dropped=self.dropped)
                self.failing, failed_since, backoff = False, None, 0.5
            except Exception as exc:  # a database or programming error: never kill the thread
                self._drop_conn()
                if not self.failing:
                    self.failing, failed_since = True, time.monotonic()
                    self._say("WARNING", "cannot write to etl.run_logs; keeping rows and retrying",
                              error=str(exc).strip()[:300], queued=self.pending, max_queue=self.max_queue)
                with self._cond:
                    self._cond.notify_all()  # loggers held up by a full queue: rows now go instead
                    wait = backoff * (0.5 + random.random())
                    if self._closing:
                        left = self._deadline - time.monotonic()
                        if left <= 0:
                            break
                        wait = min(wait, left)
                    self._cond.wait_for(lambda: self._closing and not closing, wait)
                backoff = min(backoff * 2, 30.0)
                continue
            last = batch[-1][0]
            with self._cond:
                while self._queue and self._queue[0][0] <= last:
                    self._queue.popleft()
                if not self._queue:
                    self._written_upto = self._last_queued
                else:
                    self._written_upto = self._queue[0][0] - 1
                self._cond.notify_all()
            with self._cond:
                if self._closing and self._deadline is not None and time.monotonic() > self._deadline:
                    break
        with self._cond:
            left = len(self._queue)
            self._queue.clear()
            self.dropped += left
            self._written_upto = self._last_queued
            self._cond.notify_all()
        if left:
            self._say("WARNING", "log sink closed with rows unwritten", dropped=left)
        self._drop_conn()
