-- Verify etl:cron on pg

BEGIN;

SELECT 1 / (etl.cron_next('0 2 * * *', 'UTC', '2026-01-01 03:00+00') = '2026-01-02 02:00+00')::int;
SELECT 1 / (etl.cron_describe('*/15 * * * *') IS NOT NULL)::int;

ROLLBACK;
