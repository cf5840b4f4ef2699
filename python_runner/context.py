"""What a Python job sees: its parameters, cursor, dry-run flag, a logger and metric counters."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any


class JobError(Exception):
    """Raise from a job to fail its run with an explicit classification.

    category: API, DB, DATA or SYSTEM. transient is a hint; etl.error_classes has the last word.
    """

    def __init__(self, message: str, *, category: str = "SYSTEM", transient: bool | None = None,
                 error_type: str | None = None, http_status: int | None = None):
        super().__init__(message)
        if category not in ("API", "DB", "DATA", "SYSTEM"):
            raise ValueError(f"category must be API, DB, DATA or SYSTEM, got {category!r}")
        self.category = category
        self.transient = transient
        self.error_type = error_type or type(self).__name__
        self.http_status = http_status


class Cancelled(Exception):
    """Raised by JobContext.check_cancelled() once an operator cancelled the run."""


@dataclass
class JobContext:
    run_id: int
    attempt_no: int
    job: str
    params: dict[str, Any]
    cursor: dict[str, Any] | None
    dry_run: bool
    logical_date: Any
    log: logging.LoggerAdapter
    metrics: dict[str, int] = field(default_factory=lambda: {
        "records_read": 0, "records_written": 0, "page_count": 0})
    custom: dict[str, float] = field(default_factory=dict)
    new_cursor: dict[str, Any] | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    http: Any = None  # python_runner.http.HttpClient: timeouts, classified failures, latency metrics
    item_id: int | None = None  # set when the job runs per item: params are then the item's
    item_no: int | None = None
    mode: str = "incremental"   # full: a full refresh, cursor is None and everything is reloaded

    def count(self, name: str, n: int = 1) -> None:
        """Add n to a metric: records_read, records_written, page_count, or a custom name."""
        if name in self.metrics:
            self.metrics[name] += n
        else:
            self.custom[name] = self.custom.get(name, 0) + n

    def set_cursor(self, value: str, tiebreak: str | None = None, **metadata: Any) -> None:
        """The new incremental cursor; the engine stores it with the run's success, never on a dry run."""
        self.new_cursor = {"value": value, "tiebreak": tiebreak, "metadata": metadata}

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled(f"run {self.run_id} was cancelled")
