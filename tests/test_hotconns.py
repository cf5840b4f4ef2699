"""The runner's report connections: a stack, the most recently used backend first."""
from __future__ import annotations

import threading

import psycopg
import pytest

from python_runner.hotconns import HotConnections


def backend(conn) -> int:
    return conn.execute("select pg_backend_pid() as pid").fetchone()["pid"]


def test_the_connection_used_last_goes_out_first(db):
    stack = HotConnections(db.connect)
    assert stack.fill(3) == 3
    with stack.connection() as a, stack.connection() as b:
        first, second = backend(a), backend(b)
        assert first != second and stack.in_use == 2 and stack.idle == 1
    # a came back last (the inner block ends first): the next caller gets a's backend, again and
    # again (a pool would hand out its connections in turn).
    for _ in range(5):
        with stack.connection() as c:
            assert backend(c) == first
    stack.close()
    assert stack.idle == 0


def test_concurrent_callers_each_get_their_own_connection(db):
    stack = HotConnections(db.connect)
    stack.fill(1)
    barrier = threading.Barrier(3)
    seen: list[int] = []

    def report():
        with stack.connection() as conn:
            barrier.wait(10)  # all three hold one at once
            seen.append(backend(conn))

    threads = [threading.Thread(target=report) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(set(seen)) == 3
    assert stack.idle == 3 and stack.in_use == 0
    stack.close()


def test_a_lost_connection_is_replaced_and_the_idle_ones_go_with_it(db):
    """A server restart kills every connection: the first caller to find out drops the idle ones
    too, so the retry opens a live one instead of trying each dead one in turn."""
    stack = HotConnections(db.connect)
    stack.fill(3)
    with pytest.raises(psycopg.OperationalError):
        with stack.connection() as conn:
            dead = backend(conn)
            with db.connect() as killer:
                killer.execute("select pg_terminate_backend(pid) from pg_stat_activity "
                               "where datname = current_database() and pid <> pg_backend_pid()")
            conn.execute("select 1")
    assert stack.idle == 0 and stack.in_use == 0
    with stack.connection() as conn:
        assert backend(conn) != dead
        conn.execute("select 1")
    assert stack.idle == 1
    stack.close()


def test_fill_stops_quietly_when_the_database_is_unreachable(db):
    def refuse():
        raise psycopg.OperationalError("connection refused")

    stack = HotConnections(refuse)
    assert stack.fill(4) == 0
    with pytest.raises(psycopg.OperationalError):
        with stack.connection():
            pass
    assert stack.in_use == 0
