-- Deploy etl:cron to pg
-- requires: schema
-- The cron evaluator: etl.cron_parse, etl.cron_next (time zones, DST), etl.cron_next_n, etl.cron_describe.

BEGIN;

\ir ../plpgsql/110_cron.sql

COMMIT;
