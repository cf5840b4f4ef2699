"""A stack of connections for the runner's engine calls: the most recently used one goes out first.

psycopg_pool hands its connections out in turn (first in, first out), so consecutive reports of a
chain land on different backends, each with cold CPU caches: a report and claim took 2.9 ms of
round trip through a pool of four against 2.3 ms on one backend used again and again. A stack keeps
the work on as few backends as the concurrency needs, and those stay hot.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator

import psycopg


class HotConnections:
    """Connections opened by `connect`: fill() opens some up front, and more open when all are in
    use (at most one per concurrent caller: the runner's slots bound that). A connection that comes
    back closed or broken is dropped with the idle ones, and the next caller opens a new one; a
    failure to connect reaches the caller, which retries as it would any lost connection."""

    def __init__(self, connect: Callable[[], psycopg.Connection]):
        self._connect = connect
        self._idle: list[psycopg.Connection] = []
        self._lock = threading.Lock()
        self.in_use = 0

    def fill(self, size: int) -> int:
        """Opens idle connections up to `size`; stops at the first that fails (the database may be
        down: callers open their own later). Returns how many are idle."""
        while self.idle + self.in_use < size:
            try:
                conn = self._connect()
            except psycopg.OperationalError:
                break
            with self._lock:
                self._idle.append(conn)
        return self.idle

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        with self._lock:
            conn = self._idle.pop() if self._idle else None
            self.in_use += 1
        try:
            if conn is None or conn.closed:
                conn = self._connect()
            yield conn
        finally:
            stale: list[psycopg.Connection] = []
            with self._lock:
                self.in_use -= 1
                if conn is not None and not conn.closed and not conn.broken:
                    self._idle.append(conn)
                elif conn is not None:
                    # A connection lost in use (a server restart, a network cut) says the idle ones
                    # are likely gone too: the next caller opens a new one instead of trying each.
                    stale, self._idle = self._idle, []
            for old in stale:
                with contextlib.suppress(psycopg.Error):
                    old.close()

    @property
    def idle(self) -> int:
        return len(self._idle)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(psycopg.Error):
                conn.close()
