"""`etl import matviews`: the database's materialized views into etl.refresh_targets.

Every materialized view outside the system schemas (or in the schemas given) becomes a refresh
target (refresh_mode auto: CONCURRENTLY when it has a unique index), marked discovered_at. The
tables each view reads (from its rewrite rule's dependencies) are matched against the jobs'
stored lineage (etl.job_lineage, written by `etl apply`): a job that writes one of them is where
the view should be refreshed, and `--link` records that link (policy on_success, after the job's
existing links). Idempotent: a second import adds nothing. One transaction.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import psycopg
from psycopg.types.json import Jsonb

VIEWS = """
select n.nspname as schema_name, c.relname as view_name, c.oid,
       exists (select 1 from pg_index i where i.indrelid = c.oid and i.indisunique and i.indpred is null
                 and not (0 = any (i.indkey::int2[]))) as has_unique_index,
       coalesce((select array_agg(distinct rn.nspname || '.' || rc.relname order by rn.nspname || '.' || rc.relname)
                   from pg_rewrite r
                   join pg_depend dep on dep.classid = 'pg_rewrite'::regclass and dep.objid = r.oid
                                     and dep.refclassid = 'pg_class'::regclass
                   join pg_class rc on rc.oid = dep.refobjid and rc.oid <> c.oid
                   join pg_namespace rn on rn.oid = rc.relnamespace
                  where r.ev_class = c.oid), '{}') as reads
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
 where c.relkind = 'm'
   and n.nspname not in ('pg_catalog', 'information_schema', 'etl', 'cron')
   and (%(schemas)s::text[] is null or n.nspname = any (%(schemas)s::text[]))
 order by 1, 2
"""


@dataclass
class MatviewImport:
    added: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    links_added: list[tuple[str, str]] = field(default_factory=list)      # (job, view)
    links_suggested: list[tuple[str, str]] = field(default_factory=list)  # (job, view), without --link
    unlinked: list[str] = field(default_factory=list)                     # views no job writes into

    def as_dict(self) -> dict:
        return {"added": self.added, "already_present": self.present,
                "links_added": [{"job": j, "view": v} for j, v in self.links_added],
                "links_suggested": [{"job": j, "view": v} for j, v in self.links_suggested],
                "views_without_a_writer": self.unlinked}


def import_matviews(conn: psycopg.Connection, schemas: list[str] | None, link: bool) -> MatviewImport:
    out = MatviewImport()
    with conn.transaction():
        views = conn.execute(VIEWS, {"schemas": schemas or None}).fetchall()
        for v in views:
            name = f"{v['schema_name']}.{v['view_name']}"
            row = conn.execute("""
                insert into etl.refresh_targets (schema_name, view_name, refresh_mode, description, discovered_at)
                values (%s, %s, 'auto', %s, now())
                on conflict (schema_name, view_name) do nothing
                returning refresh_target_id""",
                               (v["schema_name"], v["view_name"],
                                "found by etl import matviews" + ("" if v["has_unique_index"]
                                                                  else "; no unique index: refreshed blocking"))
                               ).fetchone()
            (out.added if row else out.present).append(name)
            writers = [r["slug"] for r in conn.execute(
                """select distinct j.slug from etl.job_lineage l join etl.jobs j using (job_id)
                    where l.access = 'write' and l.relation = any (%s) order by 1""", (list(v["reads"]),))]
            if not writers:
                out.unlinked.append(name)
            for slug in writers:
                if not link:
                    linked = conn.execute(
                        """select 1 from etl.job_refresh_targets l join etl.jobs j using (job_id)
                           join etl.refresh_targets t using (refresh_target_id)
                           where j.slug = %s and t.schema_name = %s and t.view_name = %s""",
                        (slug, v["schema_name"], v["view_name"])).fetchone()
                    if not linked:
                        out.links_suggested.append((slug, name))
                    continue
                added = conn.execute("""
                    insert into etl.job_refresh_targets (job_id, refresh_target_id, sequence, policy)
                    select j.job_id, t.refresh_target_id,
                           coalesce((select max(l.sequence) from etl.job_refresh_targets l where l.job_id = j.job_id), 0) + 1,
                           'on_success'
                      from etl.jobs j, etl.refresh_targets t
                     where j.slug = %s and t.schema_name = %s and t.view_name = %s
                    on conflict (job_id, refresh_target_id) do nothing
                    returning job_id""", (slug, v["schema_name"], v["view_name"])).fetchone()
                if added:
                    out.links_added.append((slug, name))
        if out.added or out.links_added:
            conn.execute("select etl.audit_definition_change('import_matviews', %s)", (Jsonb(out.as_dict()),))
    return out
