-- The demo's warehouse: bronze (raw API records), silver (cleaned, conformed), gold (aggregates
-- and materialized views), and one SQL function per silver and gold job. The views
-- gold.mv_<entity>_by_region are refreshed by the engine (refresh targets), not by a job.
create schema if not exists bronze;
create schema if not exists silver;
create schema if not exists gold;

do $demo$
declare
  e text;
begin
  foreach e in array array['customers', 'products', 'orders', 'order_items', 'payments', 'shipments',
                           'suppliers', 'stores', 'employees', 'inventory', 'returns', 'promotions'] loop
    execute format('create table if not exists bronze.%I (id integer primary key, region text not null,
                    modified timestamptz not null, payload jsonb not null, loaded_at timestamptz not null default now())', e);
    execute format('create table if not exists silver.%I (id integer primary key, region text not null,
                    modified timestamptz not null, payload jsonb not null)', e || '_clean');
    execute format('create table if not exists silver.%I (id integer primary key, region text not null,
                    modified timestamptz not null, attributes jsonb not null, conformed_at timestamptz not null default now())', e);
    execute format('create table if not exists gold.%I (day date not null, region text not null, records integer not null,
                    primary key (day, region))', e || '_daily');
    -- clean: keep the newest version of each record, drop rows without a region
    execute format($f$create or replace function silver.%I() returns integer language plpgsql as $b$
      declare n integer;
      begin
        insert into silver.%I as t (id, region, modified, payload)
        select id, lower(region), modified, payload from bronze.%I where region is not null
        on conflict (id) do update set region = excluded.region, modified = excluded.modified, payload = excluded.payload
         where t.modified < excluded.modified;
        get diagnostics n = row_count;
        return n;
      end $b$$f$, 'clean_' || e, e || '_clean', e);
    -- conform: project attributes without the transport fields
    execute format($f$create or replace function silver.%I() returns integer language plpgsql as $b$
      declare n integer;
      begin
        insert into silver.%I as t (id, region, modified, attributes)
        select id, region, modified, payload - 'id' - 'region' - 'modifiedDate' from silver.%I
        on conflict (id) do update set region = excluded.region, modified = excluded.modified,
                                       attributes = excluded.attributes, conformed_at = now()
         where t.modified < excluded.modified;
        get diagnostics n = row_count;
        return n;
      end $b$$f$, 'conform_' || e, e, e || '_clean');
    -- daily: records per day and region
    execute format($f$create or replace function gold.%I() returns integer language plpgsql as $b$
      declare n integer;
      begin
        delete from gold.%I;
        insert into gold.%I (day, region, records)
        select modified::date, region, count(*) from silver.%I group by 1, 2;
        get diagnostics n = row_count;
        return n;
      end $b$$f$, 'daily_' || e, e || '_daily', e || '_daily', e);
    -- by region: a materialized view with a unique index (refreshable concurrently)
    execute format('create materialized view if not exists gold.%I as
                    select region, count(*) as records, max(modified) as newest from silver.%I group by region
                    with no data', 'mv_' || e || '_by_region', e);
    execute format('create unique index if not exists %I on gold.%I (region)',
                   'mv_' || e || '_by_region_key', 'mv_' || e || '_by_region');
    execute format('create table if not exists gold.%I (day date not null, region text not null, records integer not null,
                    records_7d integer not null, primary key (day, region))', e || '_trend');
    execute format('create table if not exists gold.%I (region text primary key, records integer not null,
                    share numeric not null, newest timestamptz)', e || '_region_share');
    -- trend: 7-day rolling sum over the daily table
    execute format($f$create or replace function gold.%I() returns integer language plpgsql as $b$
      declare n integer;
      begin
        delete from gold.%I;
        insert into gold.%I (day, region, records, records_7d)
        select day, region, records,
               sum(records) over (partition by region order by day range between interval '6 days' preceding and current row)
          from gold.%I;
        get diagnostics n = row_count;
        return n;
      end $b$$f$, 'trend_' || e, e || '_trend', e || '_trend', e || '_daily');
    -- region share: read from the view the engine refreshed after conform
    execute format($f$create or replace function gold.%I() returns integer language plpgsql as $b$
      declare n integer;
      begin
        delete from gold.%I;
        insert into gold.%I (region, records, share, newest)
        select region, records, round(records::numeric / nullif(sum(records) over (), 0), 4), newest
          from gold.%I;
        get diagnostics n = row_count;
        return n;
      end $b$$f$, 'region_share_' || e, e || '_region_share', e || '_region_share', 'mv_' || e || '_by_region');
  end loop;
end
$demo$;
