"""python_runner.lineage: table-level reads/writes of SQL and routines (pure Python, no database)."""
from __future__ import annotations

import pytest

from python_runner.lineage import Lineage, LineageError, lineage_of_routine, lineage_of_sql, merge


def rw(lineage: Lineage) -> tuple[set[str], set[str]]:
    return set(lineage.reads), set(lineage.writes)


# --- plain SQL ---------------------------------------------------------------------------------

def test_insert_select_with_join():
    lin = lineage_of_sql("""
        INSERT INTO silver.orders (id, customer, amount)
        SELECT o.id, c.name, o.amount
        FROM bronze.orders o
        JOIN bronze.customers c ON c.id = o.customer_id
        LEFT JOIN LATERAL (SELECT 1 FROM bronze.flags f WHERE f.id = o.id) x ON true
    """)
    assert rw(lin) == ({"bronze.orders", "bronze.customers", "bronze.flags"}, {"silver.orders"})
    assert lin.unparsed == ()


def test_update_from_target_is_written_not_read():
    lin = lineage_of_sql("""
        UPDATE silver.orders o SET amount = s.amount
        FROM staging.orders s
        WHERE o.id = s.id AND s.id IN (SELECT id FROM staging.changed)
    """)
    assert rw(lin) == ({"staging.orders", "staging.changed"}, {"silver.orders"})


def test_delete_using():
    lin = lineage_of_sql("DELETE FROM silver.orders o USING bronze.deleted d WHERE o.id = d.id")
    assert rw(lin) == ({"bronze.deleted"}, {"silver.orders"})


def test_merge():
    lin = lineage_of_sql("""
        MERGE INTO gold.customers t
        USING (SELECT * FROM silver.customers WHERE region IN (SELECT region FROM ref.regions)) s
        ON t.id = s.id
        WHEN MATCHED THEN UPDATE SET name = s.name
        WHEN NOT MATCHED THEN INSERT (id, name) VALUES (s.id, s.name)
    """)
    assert rw(lin) == ({"silver.customers", "ref.regions"}, {"gold.customers"})


def test_insert_into_itself_reads_and_writes():
    lin = lineage_of_sql("INSERT INTO silver.t SELECT * FROM silver.t WHERE id < 0")
    assert rw(lin) == ({"silver.t"}, {"silver.t"})


def test_cte_names_are_not_tables():
    lin = lineage_of_sql("""
        WITH recent AS (SELECT * FROM bronze.orders WHERE ts > now() - interval '1 day'),
             big AS (SELECT * FROM recent WHERE amount > 100),
             orders AS (SELECT * FROM big)
        INSERT INTO silver.big_orders SELECT * FROM orders JOIN recent USING (id);
        SELECT * FROM recent;
    """)
    # `recent` in the second statement is outside the CTE's scope: a real table.
    assert rw(lin) == ({"bronze.orders", "public.recent"}, {"silver.big_orders"})


def test_recursive_and_data_modifying_ctes():
    lin = lineage_of_sql("""
        WITH RECURSIVE tree AS (
            SELECT id, parent FROM ref.nodes WHERE parent IS NULL
            UNION ALL
            SELECT n.id, n.parent FROM ref.nodes n JOIN tree t ON n.parent = t.id
        ), moved AS (
            DELETE FROM staging.queue q USING tree WHERE q.node = tree.id RETURNING q.*
        )
        INSERT INTO archive.queue SELECT * FROM moved
    """)
    assert rw(lin) == ({"ref.nodes"}, {"staging.queue", "archive.queue"})


def test_unqualified_names_get_the_default_schema_and_quotes_keep_case():
    sql = 'INSERT INTO Target SELECT * FROM Src JOIN "Mixed"."CaseTbl" USING (id)'
    assert rw(lineage_of_sql(sql)) == ({"public.src", "Mixed.CaseTbl"}, {"public.target"})
    assert rw(lineage_of_sql(sql, default_schema="etl")) == ({"etl.src", "Mixed.CaseTbl"}, {"etl.target"})


def test_set_search_path_moves_the_default_schema():
    lin = lineage_of_sql("""
        INSERT INTO a SELECT 1;
        SET search_path TO "$user", staging, public;
        INSERT INTO b SELECT * FROM c;
        RESET search_path;
        DELETE FROM d;
    """)
    assert rw(lin) == ({"staging.c"}, {"public.a", "staging.b", "public.d"})


def test_function_calls_and_for_update_of_alias_are_not_tables():
    lin = lineage_of_sql("""
        SELECT silver.other_proc(), count(*) FROM generate_series(1, 3) g, bronze.x bx
        WHERE bx.id = g FOR UPDATE OF bx;
        CALL silver.load((SELECT max(id) FROM bronze.y));
    """)
    assert rw(lin) == ({"bronze.x", "bronze.y"}, set())


def test_truncate_refresh_copy_are_writes():
    lin = lineage_of_sql("""
        TRUNCATE staging.a, b;
        REFRESH MATERIALIZED VIEW CONCURRENTLY gold.daily;
        COPY staging.c FROM STDIN;
        COPY (SELECT * FROM silver.d) TO STDOUT;
        COPY silver.e TO STDOUT;
    """)
    assert rw(lin) == ({"silver.d", "silver.e"}, {"staging.a", "public.b", "gold.daily", "staging.c"})


def test_refresh_materialized_view_alone():
    assert lineage_of_sql("REFRESH MATERIALIZED VIEW gold.sales_by_day") == Lineage(
        reads=frozenset(), writes=frozenset({"gold.sales_by_day"}), unparsed=())


def test_temp_tables_excluded_ddl_ignored():
    lin = lineage_of_sql("""
        CREATE TABLE silver.keep (id int);
        CREATE TEMP TABLE scratch (id int) ON COMMIT DROP;
        CREATE TEMPORARY TABLE scratch2 AS SELECT * FROM bronze.src;
        INSERT INTO scratch SELECT id FROM scratch2;
        INSERT INTO silver.keep SELECT id FROM scratch;
        CREATE TABLE silver.snapshot AS SELECT * FROM silver.keep;
        CREATE TEMP TABLE shape AS SELECT * FROM bronze.never_read WITH NO DATA;
        SELECT * INTO TEMP scratch3 FROM bronze.other;
        CREATE INDEX ON silver.keep (id);
        DROP TABLE scratch2;
    """)
    assert rw(lin) == ({"bronze.src", "bronze.other", "silver.keep"}, {"silver.keep", "silver.snapshot"})


def test_do_block_is_analysed():
    lin = lineage_of_sql("DO $$ BEGIN INSERT INTO silver.t SELECT * FROM bronze.s; "
                         "EXECUTE 'truncate ' || 'x'; END $$")
    assert rw(lin) == ({"bronze.s"}, {"silver.t"})
    assert lin.unparsed == ("DO:1: EXECUTE 'truncate ' || 'x'",)


def test_create_function_in_plain_sql_is_a_definition_not_an_execution():
    lin = lineage_of_sql("CREATE FUNCTION f() RETURNS void LANGUAGE sql AS 'DELETE FROM silver.t'")
    assert rw(lin) == (set(), set())


def test_sql_parse_error_raises_lineage_error_with_position():
    with pytest.raises(LineageError) as error:
        lineage_of_sql("SELECT 1;\nSELECT id, name frm bronze.t")  # `frm` is an alias
    assert str(error.value) == 'SQL: syntax error at or near "bronze" at line 2, column 21'
    assert issubclass(LineageError, ValueError)


# --- routines ----------------------------------------------------------------------------------

PROCEDURE_FILE = r"""
CREATE TABLE IF NOT EXISTS silver.orders (id bigint PRIMARY KEY, amount numeric);

CREATE OR REPLACE PROCEDURE silver.load_orders(p_day date, INOUT p_rows int DEFAULT 0)
LANGUAGE plpgsql AS $proc$
DECLARE
  r record;
  v_max bigint := (SELECT max(id) FROM silver.orders);
  cur CURSOR FOR SELECT id FROM bronze.cursor_src;
BEGIN
  CREATE TEMP TABLE tmp_orders ON COMMIT DROP AS
    SELECT * FROM bronze.orders WHERE day = p_day;
  IF EXISTS (SELECT 1 FROM bronze.load_flags WHERE day = p_day) THEN
    INSERT INTO silver.orders SELECT t.id, t.amount FROM tmp_orders t
      JOIN bronze.customers c ON c.id = t.customer_id
    ON CONFLICT (id) DO UPDATE SET amount = excluded.amount;
  ELSIF p_day < current_date THEN
    PERFORM silver.other_proc(p_day);
  ELSE
    PERFORM 1 FROM bronze.heartbeat;
  END IF;
  FOR r IN SELECT id FROM bronze.corrections LOOP
    UPDATE silver.orders SET amount = 0 WHERE id = r.id;
  END LOOP;
  LOOP
    EXIT WHEN p_rows > 10;
    p_rows := p_rows + (SELECT count(*) FROM bronze.counter);
  END LOOP;
  WHILE v_max > (SELECT min(id) FROM bronze.lower_bound) LOOP
    v_max := v_max - 1;
  END LOOP;
  SELECT count(*) INTO p_rows FROM silver.orders;
  BEGIN
    DELETE FROM silver.orders_errors WHERE day = p_day;
  EXCEPTION WHEN others THEN
    INSERT INTO audit.failures VALUES (p_day, sqlerrm);
  END;
  EXECUTE format('TRUNCATE %I.%I', 'staging', 'orders_' || p_day);
  EXECUTE 'DELETE FROM staging.static_target WHERE day = $1' USING p_day;
  COMMIT;
END
$proc$;

GRANT EXECUTE ON PROCEDURE silver.load_orders(date, int) TO etl;
"""


def test_plpgsql_procedure_file():
    lin = lineage_of_routine(PROCEDURE_FILE)
    assert set(lin.reads) == {
        "silver.orders",        # v_max default and SELECT INTO
        "bronze.cursor_src",    # cursor declaration
        "bronze.orders",        # CREATE TEMP TABLE AS
        "bronze.load_flags",    # IF condition
        "bronze.customers",     # JOIN in INSERT
        "bronze.heartbeat",     # PERFORM ... FROM
        "bronze.corrections",   # FOR ... IN SELECT
        "bronze.counter",       # assignment with a subquery
        "bronze.lower_bound",   # WHILE condition
    }
    assert set(lin.writes) == {
        "silver.orders", "silver.orders_errors", "audit.failures", "staging.static_target"}
    assert lin.unparsed == (
        "silver.load_orders:34: EXECUTE format('TRUNCATE %I.%I', 'staging', 'orders_' || p_day)",)


def test_plpgsql_function_return_query_and_pg_get_functiondef_format():
    definition = (
        "CREATE OR REPLACE FUNCTION gold.report(p_region text)\n"
        " RETURNS TABLE(id bigint, total numeric)\n"
        " LANGUAGE plpgsql\n"
        "AS $function$\n"
        "begin\n"
        "  perform gold.log_call('report');\n"
        "  if p_region is null then\n"
        "    return query select s.id, s.total from gold.sales s;\n"
        "  end if;\n"
        "  return query execute 'select id, total from gold.' || quote_ident(p_region);\n"
        "  for i in 1..(select count(*) from gold.pages) loop\n"
        "    return query with x as (select * from gold.regional) select x.id, x.total from x;\n"
        "  end loop;\n"
        "end\n"
        "$function$\n"
    )
    lin = lineage_of_routine(definition)
    assert rw(lin) == ({"gold.sales", "gold.pages", "gold.regional"}, set())
    assert lin.unparsed == (
        "gold.report:7: EXECUTE 'select id, total from gold.' || quote_ident(p_region)",)


def test_dynamic_execute_variants_are_unparsed():
    lin = lineage_of_routine("""
        CREATE FUNCTION etl.dyn(t text) RETURNS SETOF record LANGUAGE plpgsql AS $$
        DECLARE r record; c refcursor;
        BEGIN
          EXECUTE 'INSERT INTO ' || t || ' SELECT * FROM bronze.src';
          FOR r IN EXECUTE format('SELECT * FROM %s', t) LOOP END LOOP;
          OPEN c FOR EXECUTE 'SELECT ' || t;
          RETURN QUERY EXECUTE $q$SELECT * FROM silver.fixed$q$;
        END $$
    """)
    assert rw(lin) == ({"silver.fixed"}, set())  # a constant string is plain SQL
    assert lin.unparsed == (
        "etl.dyn:4: EXECUTE 'INSERT INTO ' || t || ' SELECT * FROM bronze.src'",
        "etl.dyn:5: EXECUTE format('SELECT * FROM %s', t)",
        "etl.dyn:6: EXECUTE 'SELECT ' || t",
    )


def test_language_sql_dollar_quoted_body():
    lin = lineage_of_routine("""
        CREATE FUNCTION silver.refresh_totals() RETURNS void LANGUAGE sql AS $$
          DELETE FROM silver.totals;
          INSERT INTO silver.totals SELECT region, sum(amount) FROM silver.orders GROUP BY region;
          SELECT silver.notify_done();
        $$
    """)
    assert lin == Lineage(reads=frozenset({"silver.orders"}),
                          writes=frozenset({"silver.totals"}), unparsed=())


def test_language_sql_begin_atomic_and_return_forms():
    lin = lineage_of_routine("""
        CREATE PROCEDURE silver.copy_day(d date) LANGUAGE sql
        BEGIN ATOMIC
          INSERT INTO silver.daily SELECT * FROM bronze.daily WHERE day = d;
          UPDATE silver.watermark SET last_day = d;
        END;
        CREATE FUNCTION silver.max_day() RETURNS date LANGUAGE sql
        RETURN (SELECT max(day) FROM silver.daily_view);
    """)
    assert rw(lin) == ({"bronze.daily", "silver.daily_view"}, {"silver.daily", "silver.watermark"})


def test_routine_set_search_path_and_default_schema():
    lin = lineage_of_routine("""
        CREATE FUNCTION f() RETURNS void LANGUAGE sql SET search_path = "$user", staging AS $$
          INSERT INTO a SELECT * FROM public.b JOIN c USING (id)
        $$;
        CREATE FUNCTION g() RETURNS void LANGUAGE sql AS $$ DELETE FROM d $$;
    """, default_schema="etl")
    assert rw(lin) == ({"public.b", "staging.c"}, {"staging.a", "etl.d"})


def test_temp_table_in_plpgsql_is_excluded():
    lin = lineage_of_routine("""
        CREATE PROCEDURE silver.p() LANGUAGE plpgsql AS $$
        BEGIN
          CREATE TEMP TABLE stage (LIKE silver.target) ON COMMIT DROP;
          INSERT INTO stage SELECT * FROM bronze.src;
          UPDATE stage SET x = 1;
          INSERT INTO silver.target SELECT * FROM stage;
          INSERT INTO pg_temp.other SELECT 1;
          INSERT INTO public.stage SELECT 1;  -- qualified: the real table, not the temp one
        END $$
    """)
    assert rw(lin) == ({"bronze.src"}, {"silver.target", "public.stage"})


def test_truncate_and_refresh_in_a_routine():
    lin = lineage_of_routine("""
        CREATE PROCEDURE gold.rebuild() LANGUAGE plpgsql AS $$
        BEGIN
          TRUNCATE gold.facts;
          INSERT INTO gold.facts SELECT * FROM silver.facts;
          REFRESH MATERIALIZED VIEW gold.summary;
        END $$
    """)
    assert rw(lin) == ({"silver.facts"}, {"gold.facts", "gold.summary"})


def test_other_languages_are_reported():
    lin = lineage_of_routine("CREATE FUNCTION py.f() RETURNS int LANGUAGE plpython3u AS $$ return 1 $$")
    assert lin == Lineage(unparsed=("py.f: LANGUAGE plpython3u body not analysed",))


@pytest.mark.parametrize("definition, message", [
    ("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'\nfrobnicate",
     'routine definition: syntax error at or near "frobnicate" at line 2, column 1'),
    ("CREATE FUNCTION f( RETURNS int",
     "routine definition: syntax error at end of input"),
    ("CREATE FUNCTION silver.f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN x := 1; END $$",
     'silver.f (LANGUAGE plpgsql body): "x" is not a known variable'),
    # A type libpg_query cannot resolve must not hide the real error.
    ("CREATE FUNCTION silver.f(p etl.t) RETURNS void LANGUAGE plpgsql AS $$ BEGIN IF p THEN END $$",
     "silver.f (LANGUAGE plpgsql body): syntax error at end of input"),
    ("CREATE FUNCTION silver.g() RETURNS int LANGUAGE sql AS 'SELECT 1 FROM t, WHERE true'",
     'silver.g (LANGUAGE sql body): syntax error at or near "WHERE" at line 1, column 18'),
    ("SELECT 1",
     "routine definition: no CREATE FUNCTION or CREATE PROCEDURE statement"),
])
def test_routine_parse_errors(definition, message):
    with pytest.raises(LineageError) as error:
        lineage_of_routine(definition)
    assert str(error.value) == message


# --- merge -------------------------------------------------------------------------------------

def test_merge_unions_and_keeps_unparsed_order():
    a = Lineage(frozenset({"s.a"}), frozenset({"s.b"}), ("x", "y"))
    b = Lineage(frozenset({"s.c"}), frozenset({"s.b", "s.d"}), ("y", "z"))
    assert merge(a, b) == Lineage(frozenset({"s.a", "s.c"}), frozenset({"s.b", "s.d"}), ("x", "y", "z"))
    assert merge() == Lineage()


def test_plpgsql_with_types_from_other_schemas():
    # libpg_query's PL/pgSQL parser rejects types outside pg_catalog/public and arrays of
    # unknown types; lineage must still come out, with the right line numbers.
    lin = lineage_of_routine("""
        CREATE FUNCTION silver.f(p_spec etl.cron_spec, p_ids etl.id_t[], p_n silver.t.n%TYPE)
        RETURNS SETOF silver.orders LANGUAGE plpgsql AS $$
        DECLARE
          v_spec etl.cron_spec := etl.cron_parse('x');  -- a comment [with brackets
          v_all  CONSTANT "Etl".status[] := '{}';
          v_row  silver.orders%ROWTYPE;
          c CURSOR FOR SELECT * FROM silver.cursor_src;
        BEGIN
          v_spec.x := (SELECT max(x) FROM silver.specs);
          RETURN QUERY SELECT * FROM silver.orders WHERE id = ANY (p_ids);
          EXECUTE 'select ' || v_spec;
        END $$
    """)
    assert rw(lin) == ({"silver.cursor_src", "silver.specs", "silver.orders"}, set())
    assert lin.unparsed == ("silver.f:10: EXECUTE 'select ' || v_spec",)


def test_trigger_function():
    lin = lineage_of_routine("""
        CREATE FUNCTION audit.log_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          NEW.changed_at := now();
          INSERT INTO audit.changes (tbl, row) VALUES (TG_TABLE_NAME, to_jsonb(NEW));
          RETURN NEW;
        END $$;
        CREATE TRIGGER t AFTER UPDATE ON silver.orders FOR EACH ROW EXECUTE FUNCTION audit.log_change();
    """)
    assert rw(lin) == (set(), {"audit.changes"})
