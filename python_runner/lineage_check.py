"""Lineage at `etl apply`: what each SQL job reads and writes, and the dependencies it implies.

For every sql job in the files, the code is its ``sql_file`` when given (the file that defines
the routine), else the routine's definition in the database (``pg_get_functiondef``, every
overload). python_runner.lineage derives the tables it reads and writes with pglast. A job that
reads a table another job writes should run after it: when the writer is not among the reader's
ancestors (its dependencies, transitively, in the files and in the database), apply warns, and
with --strict refuses. The lineage is stored in etl.job_lineage by apply.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from . import definitions as d
from .lineage import Lineage, LineageError, lineage_of_routine, lineage_of_sql


@dataclass
class LineageReport:
    by_job: dict[str, Lineage] = field(default_factory=dict)
    missing_dependencies: list[tuple[str, str, str, str]] = field(default_factory=list)  # file, reader, table, writer
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # file, job, message


def _code_of(conn: psycopg.Connection, job: d.JobDef) -> str | None:
    if job.sql_file:
        return Path(job.sql_file).read_text(encoding="utf-8")
    schema, _, name = str(job.columns["target"]).partition(".")
    rows = conn.execute("""
        select pg_get_functiondef(p.oid) as def from pg_proc p join pg_namespace n on n.oid = p.pronamespace
         where n.nspname = %s and p.proname = %s and p.prokind in ('f', 'p') order by p.oid""",
                        (schema, name)).fetchall()
    return "\n;\n".join(r["def"] for r in rows) if rows else None


def derive(conn: psycopg.Connection, defs: d.Definitions) -> LineageReport:
    """Lineage of every sql job in defs, and the reads whose writer is not an ancestor."""
    report = LineageReport()
    file_of = {j.slug: j.file for j in defs.jobs}
    for job in defs.jobs:
        if job.columns.get("kind") != "sql":
            continue
        try:
            code = _code_of(conn, job)
        except OSError as exc:
            report.problems.append((job.file, job.slug, f"cannot read its SQL: {exc}"))
            continue
        if code is None:
            continue  # the routine does not exist yet; validate_against_db reports it
        try:
            default_schema = str(job.columns["target"]).partition(".")[0]
            if "create" in code.lower() and ("function" in code.lower() or "procedure" in code.lower()):
                lin = lineage_of_routine(code, default_schema=default_schema)
            else:
                lin = lineage_of_sql(code, default_schema=default_schema)
        except LineageError as exc:
            report.problems.append((job.file, job.slug, f"lineage could not be derived: {exc}"))
            continue
        report.by_job[job.slug] = lin

    # Writers: the jobs of the files as derived now, the others as stored.
    writers: dict[str, set[str]] = {}
    for slug, lin in report.by_job.items():
        for table in lin.writes:
            writers.setdefault(table, set()).add(slug)
    for row in conn.execute("""select j.slug, l.relation from etl.job_lineage l join etl.jobs j using (job_id)
                                where l.access = 'write' and j.enabled"""):
        if row["slug"] not in file_of:
            writers.setdefault(row["relation"], set()).add(row["slug"])

    parents: dict[str, set[str]] = {}
    for row in conn.execute("""select p.slug as parent, c.slug as child from etl.job_dependencies dep
                                 join etl.jobs p on p.job_id = dep.parent_job_id
                                 join etl.jobs c on c.job_id = dep.child_job_id"""):
        if row["child"] not in file_of:  # the files' depends_on replace the database's edges
            parents.setdefault(row["child"], set()).add(row["parent"])
    for job in defs.jobs:
        parents[job.slug] = set(job.depends_on)

    def ancestors(slug: str) -> set[str]:
        seen: set[str] = set()
        stack = list(parents.get(slug, ()))
        while stack:
            p = stack.pop()
            if p not in seen:
                seen.add(p)
                stack.extend(parents.get(p, ()))
        return seen

    for slug, lin in sorted(report.by_job.items()):
        up = ancestors(slug)
        for table in sorted(lin.reads):
            for writer in sorted(writers.get(table, set()) - {slug}):
                if writer not in up:
                    report.missing_dependencies.append((file_of[slug], slug, table, writer))
    return report


def store(conn: psycopg.Connection, report: LineageReport) -> None:
    """Replace the stored lineage of the jobs that were derived."""
    for slug, lin in report.by_job.items():
        conn.execute("delete from etl.job_lineage where job_id = (select job_id from etl.jobs where slug = %s)",
                     (slug,))
        rows = [(slug, t, "read") for t in sorted(lin.reads)] + [(slug, t, "write") for t in sorted(lin.writes)]
        if rows:
            with conn.cursor() as cur:
                cur.executemany("""insert into etl.job_lineage (job_id, relation, access)
                                   select job_id, %s, %s from etl.jobs where slug = %s""",
                                [(t, a, s) for s, t, a in rows])


def stored(conn: psycopg.Connection) -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    out: dict[str, tuple[set[str], set[str]]] = {}
    for row in conn.execute("select j.slug, l.relation, l.access from etl.job_lineage l join etl.jobs j using (job_id)"):
        reads, writes = out.setdefault(row["slug"], (set(), set()))
        (reads if row["access"] == "read" else writes).add(row["relation"])
    return {k: (frozenset(r), frozenset(w)) for k, (r, w) in out.items()}
