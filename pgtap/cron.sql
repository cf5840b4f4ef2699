-- pgTAP tests for plpgsql/110_cron.sql: etl.cron_parse, etl.cron_next,
-- etl.cron_next_n, etl.cron_describe.
--
-- Calendar facts used below: 2026-01-01 is a Thursday. DST in 2026:
--   Europe/Berlin     spring 2026-03-29 01:00Z (02:00 CET -> 03:00 CEST),
--                     fall   2026-10-25 01:00Z (03:00 CEST -> 02:00 CET; 02:00-02:59 twice)
--   America/New_York  spring 2026-03-08 07:00Z (02:00 EST -> 03:00 EDT),
--                     fall   2026-11-01 06:00Z (02:00 EDT -> 01:00 EST; 01:00-01:59 twice)
-- All expected instants are written in UTC, so the results must not depend on
-- the session time zone; an exotic one (+13:45) is set to prove it.

BEGIN;
SET LOCAL TimeZone = 'Pacific/Chatham';

SELECT plan(133);

-- ---------------------------------------------------------------- catalog
SELECT has_type('etl', 'cron_spec', 'the composite type etl.cron_spec exists');
SELECT volatility_is('etl', 'cron_parse', ARRAY['text'], 'immutable',
    'cron_parse is immutable: it depends on nothing but its argument');
SELECT volatility_is('etl', 'cron_describe', ARRAY['text'], 'immutable',
    'cron_describe is immutable');
SELECT volatility_is('etl', 'cron_next', ARRAY['text', 'text', 'timestamp with time zone'], 'stable',
    'cron_next is stable because it depends on time zone data');
SELECT volatility_is('etl', 'cron_next_n', ARRAY['text', 'text', 'timestamp with time zone', 'integer'], 'stable',
    'cron_next_n is stable because it depends on time zone data');

-- ---------------------------------------------------------------- parsing
SELECT is(cardinality((etl.cron_parse('* * * * *')).minutes), 60,
    '* in the minute field expands to all 60 minutes');
SELECT is(etl.cron_parse('*/15 9-17 1,15 JAN-mar mon-FRI'),
    ROW('{0,15,30,45}', '{9,10,11,12,13,14,15,16,17}', '{1,15}', '{1,2,3}', '{1,2,3,4,5}', false, false)::etl.cron_spec,
    'steps, ranges, lists and case-insensitive month and day names (also in ranges) parse to sorted value sets');
SELECT is((etl.cron_parse('10-40/10 * * * *')).minutes, '{10,20,30,40}'::int[],
    'a-b/n takes every n-th value from a to b');
SELECT is((etl.cron_parse('50/5 * * * *')).minutes, '{50,55}'::int[],
    'a/n means a-max/n');
SELECT is((etl.cron_parse('5,1,5,3 * * * *')).minutes, '{1,3,5}'::int[],
    'lists are sorted and de-duplicated');
SELECT is((etl.cron_parse('0 0 * * 7')).dows, '{0}'::int[],
    'day-of-week 7 is Sunday (0)');
SELECT is((etl.cron_parse('0 0 * * 5-7')).dows, '{0,5,6}'::int[],
    'the range 5-7 is Friday through Sunday');
SELECT is((etl.cron_parse('0 0 * * FRI-SUN')).dows, '{0,5,6}'::int[],
    'SUN ending a named range counts as 7, so FRI-SUN is Friday through Sunday');
SELECT is((etl.cron_parse('0 0 * * sun')).dows, '{0}'::int[],
    'a lower-case day name is accepted');
SELECT is((etl.cron_parse('0 0 * * *')).dows, '{0,1,2,3,4,5,6}'::int[],
    '* in day-of-week is 0-6 without a duplicate Sunday');
SELECT is(ARRAY[(etl.cron_parse('0 0 * * *')).dom_star, (etl.cron_parse('0 0 * * *')).dow_star], ARRAY[true, true],
    'both day fields are flagged as * when written as *');
SELECT is(ARRAY[(etl.cron_parse('0 0 */2 * MON')).dom_star, (etl.cron_parse('0 0 */2 * MON')).dow_star], ARRAY[false, false],
    'a stepped */2 day-of-month counts as restricted for the day rule');
SELECT is(etl.cron_parse(E'  0\t0   1 * *  '), etl.cron_parse('0 0 1 * *'),
    'fields may be separated by any whitespace, and outer whitespace is ignored');
SELECT is(etl.cron_parse(NULL), NULL::etl.cron_spec, 'cron_parse(NULL) is NULL');

-- macros
SELECT is(etl.cron_parse('@yearly'), etl.cron_parse('0 0 1 1 *'), '@yearly is 0 0 1 1 *');
SELECT is(etl.cron_parse('@annually'), etl.cron_parse('0 0 1 1 *'), '@annually is 0 0 1 1 *');
SELECT is(etl.cron_parse('@monthly'), etl.cron_parse('0 0 1 * *'), '@monthly is 0 0 1 * *');
SELECT is(etl.cron_parse('@weekly'), etl.cron_parse('0 0 * * 0'), '@weekly is 0 0 * * 0');
SELECT is(etl.cron_parse('@daily'), etl.cron_parse('0 0 * * *'), '@daily is 0 0 * * *');
SELECT is(etl.cron_parse('@midnight'), etl.cron_parse('0 0 * * *'), '@midnight is 0 0 * * *');
SELECT is(etl.cron_parse('@hourly'), etl.cron_parse('0 * * * *'), '@hourly is 0 * * * *');
SELECT is(etl.cron_parse('@Daily'), etl.cron_parse('0 0 * * *'), 'macros are case-insensitive');

-- ---------------------------------------------------------------- parse errors
SELECT throws_ok($$SELECT etl.cron_parse('61 * * * *')$$, '22023',
    'invalid cron expression "61 * * * *": minute field "61" is out of range 0-59',
    'a minute above 59 is rejected, naming the field and value');
SELECT throws_ok($$SELECT etl.cron_parse('* * * *')$$, '22023',
    'invalid cron expression "* * * *": expected 5 fields, got 4',
    'four fields are rejected');
SELECT throws_ok($$SELECT etl.cron_parse('* * * * * *')$$, '22023',
    'invalid cron expression "* * * * * *": expected 5 fields, got 6',
    'six fields (seconds or years) are rejected');
SELECT throws_ok($$SELECT etl.cron_parse('')$$, '22023',
    'invalid cron expression "": expected 5 fields, got 0',
    'an empty expression is rejected');
SELECT throws_ok($$SELECT etl.cron_parse('* * * * FOO')$$, '22023',
    'invalid cron expression "* * * * FOO": day-of-week field "FOO" is not a number or name',
    'an unknown day name is rejected');
SELECT throws_ok($$SELECT etl.cron_parse('0 0 1 FOO *')$$, '22023',
    'invalid cron expression "0 0 1 FOO *": month field "FOO" is not a number or name',
    'an unknown month name is rejected');
SELECT throws_ok($$SELECT etl.cron_parse('x * * * *')$$, '22023',
    'invalid cron expression "x * * * *": minute field "x" is not a number',
    'names are not accepted in the minute field');
SELECT throws_ok($$SELECT etl.cron_parse('*/0 * * * *')$$, '22023',
    'invalid cron expression "*/0 * * * *": minute field "*/0" has step 0; the step must be at least 1',
    'step 0 is rejected');
SELECT throws_ok($$SELECT etl.cron_parse('*/x * * * *')$$, '22023',
    'invalid cron expression "*/x * * * *": minute field "*/x" has step "x", which is not a number from 1 to 9999',
    'a non-numeric step is rejected');
SELECT throws_ok($$SELECT etl.cron_parse('0 5-2 * * *')$$, '22023',
    'invalid cron expression "0 5-2 * * *": hour field "5-2" is a reversed range (5 is greater than 2)',
    'a reversed range is rejected');
SELECT throws_ok($$SELECT etl.cron_parse('0 0 * * SAT-MON')$$, '22023',
    'invalid cron expression "0 0 * * SAT-MON": day-of-week field "SAT-MON" is a reversed range (6 is greater than 1)',
    'a reversed named range is rejected');
SELECT throws_ok($$SELECT etl.cron_parse('0 24 * * *')$$, '22023',
    'invalid cron expression "0 24 * * *": hour field "24" is out of range 0-23',
    'hour 24 is rejected');
SELECT throws_ok($$SELECT etl.cron_parse('0 0 0 * *')$$, '22023',
    'invalid cron expression "0 0 0 * *": day-of-month field "0" is out of range 1-31',
    'day-of-month 0 is rejected');
SELECT throws_ok($$SELECT etl.cron_parse('0 0 1 13 *')$$, '22023',
    'invalid cron expression "0 0 1 13 *": month field "13" is out of range 1-12',
    'month 13 is rejected');
SELECT throws_ok($$SELECT etl.cron_parse('0 0 * * 8')$$, '22023',
    'invalid cron expression "0 0 * * 8": day-of-week field "8" is out of range 0-7',
    'day-of-week 8 is rejected');
SELECT throws_ok($$SELECT etl.cron_parse('0 1-99 * * *')$$, '22023',
    'invalid cron expression "0 1-99 * * *": hour field "99" is out of range 0-23',
    'an out-of-range range end is rejected, naming the bad value');
SELECT throws_ok($$SELECT etl.cron_parse('1,,2 * * * *')$$, '22023',
    'invalid cron expression "1,,2 * * * *": minute field "1,,2" has an empty list element',
    'an empty list element is rejected');
SELECT throws_ok($$SELECT etl.cron_parse('1-2-3 * * * *')$$, '22023',
    'invalid cron expression "1-2-3 * * * *": minute field "1-2-3" is not a valid range',
    'a malformed range is rejected');
SELECT throws_ok($$SELECT etl.cron_parse('1/2/3 * * * *')$$, '22023',
    'invalid cron expression "1/2/3 * * * *": minute field "1/2/3" has more than one step',
    'a double step is rejected');
SELECT throws_ok($$SELECT etl.cron_parse('0 0 L * *')$$, '22023',
    'invalid cron expression "0 0 L * *": day-of-month field "L" is not a number',
    'the non-standard L is rejected');
SELECT throws_ok($$SELECT etl.cron_parse('@reboot')$$, '22023',
    'invalid cron expression "@reboot": unknown macro (supported: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)',
    '@reboot and other unknown macros are rejected');

-- ---------------------------------------------------------------- cron_next, UTC
SELECT is(etl.cron_next('* * * * *', 'UTC', '2026-01-01 00:00:30+00'), '2026-01-01 00:01:00+00'::timestamptz,
    '* * * * * fires at the next whole minute');
SELECT is(etl.cron_next('0 * * * *', 'UTC', '2026-01-01 01:00:00+00'), '2026-01-01 02:00:00+00'::timestamptz,
    'the next fire time is strictly after "after", even when "after" is itself a fire time');
SELECT is(etl.cron_next('5 * * * *', 'UTC', '2026-01-01 01:10:00+00'), '2026-01-01 02:05:00+00'::timestamptz,
    'a single minute that has passed rolls over to the next hour');
SELECT is(etl.cron_next('10-12 * * * *', 'UTC', '2026-01-01 00:11:00+00'), '2026-01-01 00:12:00+00'::timestamptz,
    'a range fires on its next value');
SELECT is(etl.cron_next('10-12 * * * *', 'UTC', '2026-01-01 00:12:00+00'), '2026-01-01 01:10:00+00'::timestamptz,
    'after the end of a range the next hour''s range start fires');
SELECT is(etl.cron_next('*/15 * * * *', 'UTC', '2026-01-01 00:16:00+00'), '2026-01-01 00:30:00+00'::timestamptz,
    '*/15 fires at the next quarter hour');
SELECT is(etl.cron_next('10-40/10 * * * *', 'UTC', '2026-01-01 00:41:00+00'), '2026-01-01 01:10:00+00'::timestamptz,
    'a-b/n wraps to the next hour after b');
SELECT is(etl.cron_next('50/5 * * * *', 'UTC', '2026-01-01 00:51:00+00'), '2026-01-01 00:55:00+00'::timestamptz,
    'a/n continues up to the field maximum');
SELECT is(etl.cron_next('50/5 * * * *', 'UTC', '2026-01-01 00:55:00+00'), '2026-01-01 01:50:00+00'::timestamptz,
    'a/n restarts at a in the next hour');
SELECT is(etl.cron_next('5,35 * * * *', 'UTC', '2026-01-01 00:06:00+00'), '2026-01-01 00:35:00+00'::timestamptz,
    'a list fires on its next element');
SELECT is(etl.cron_next('0 0 1 JUN *', 'UTC', '2026-01-01 00:00:00+00'), '2026-06-01 00:00:00+00'::timestamptz,
    'a month name selects that month');
SELECT is(etl.cron_next('0 0 1 jun *', 'UTC', '2026-01-01 00:00:00+00'), '2026-06-01 00:00:00+00'::timestamptz,
    'month names are case-insensitive');
SELECT is(etl.cron_next('0 9 * * MON-FRI', 'UTC', '2026-01-02 09:00:00+00'), '2026-01-05 09:00:00+00'::timestamptz,
    'MON-FRI skips the weekend from Friday to Monday');
SELECT is(etl.cron_next('0 0 * * 7', 'UTC', '2026-01-01 00:00:00+00'), '2026-01-04 00:00:00+00'::timestamptz,
    'day-of-week 7 fires on Sunday');
SELECT is(etl.cron_next('0 0 * * 0', 'UTC', '2026-01-01 00:00:00+00'), '2026-01-04 00:00:00+00'::timestamptz,
    'day-of-week 0 fires on Sunday too');

-- day-of-month / day-of-week rule
SELECT is(etl.cron_next('0 0 13 * FRI', 'UTC', '2026-01-01 00:00:00+00'), '2026-01-02 00:00:00+00'::timestamptz,
    '0 0 13 * FRI fires on a Friday that is not the 13th (both restricted: either matches)');
SELECT is(etl.cron_next('0 0 13 * FRI', 'UTC', '2026-01-10 00:00:00+00'), '2026-01-13 00:00:00+00'::timestamptz,
    '0 0 13 * FRI fires on the 13th even though it is a Tuesday');
SELECT is(ARRAY(SELECT etl.cron_next_n('0 0 13 * FRI', 'UTC', '2026-01-01 00:00:00+00', 4)),
    '{"2026-01-02 00:00:00+00","2026-01-09 00:00:00+00","2026-01-13 00:00:00+00","2026-01-16 00:00:00+00"}'::timestamptz[],
    '0 0 13 * FRI fires on Fridays and on the 13th, in order');
SELECT is(etl.cron_next('0 0 13 * *', 'UTC', '2026-01-01 00:00:00+00'), '2026-01-13 00:00:00+00'::timestamptz,
    'with day-of-week * only the day-of-month counts');
SELECT is(etl.cron_next('0 0 * * FRI', 'UTC', '2026-01-03 00:00:00+00'), '2026-01-09 00:00:00+00'::timestamptz,
    'with day-of-month * only the day-of-week counts');

-- rollovers and leap years
SELECT is(etl.cron_next('0 0 * * *', 'UTC', '2026-01-31 23:59:59+00'), '2026-02-01 00:00:00+00'::timestamptz,
    'a daily schedule rolls over into the next month');
SELECT is(etl.cron_next('0 0 31 * *', 'UTC', '2026-04-01 00:00:00+00'), '2026-05-31 00:00:00+00'::timestamptz,
    'day 31 skips a 30-day month');
SELECT is(etl.cron_next('0 0 29 2 *', 'UTC', '2026-01-01 00:00:00+00'), '2028-02-29 00:00:00+00'::timestamptz,
    'February 29 fires in the next leap year');
SELECT is(etl.cron_next('0 0 29 2 *', 'UTC', '2096-03-01 00:00:00+00'), '2104-02-29 00:00:00+00'::timestamptz,
    'February 29 skips 2100, which is not a leap year (an 8-year gap)');
SELECT is(etl.cron_next('0 0 1 1 *', 'UTC', '2026-06-01 00:00:00+00'), '2027-01-01 00:00:00+00'::timestamptz,
    'January 1 rolls over into the next year');
SELECT is(etl.cron_next('59 23 31 12 *', 'UTC', '2026-12-31 23:59:00+00'), '2027-12-31 23:59:00+00'::timestamptz,
    'the last minute of the year fires again a year later');

-- macros
SELECT is(etl.cron_next('@hourly', 'UTC', '2026-01-01 00:30:00+00'), '2026-01-01 01:00:00+00'::timestamptz,
    '@hourly fires at the top of the next hour');
SELECT is(etl.cron_next('@daily', 'UTC', '2026-01-01 00:00:00+00'), '2026-01-02 00:00:00+00'::timestamptz,
    '@daily fires at the next midnight');
SELECT is(etl.cron_next('@weekly', 'UTC', '2026-01-01 00:00:00+00'), '2026-01-04 00:00:00+00'::timestamptz,
    '@weekly fires at midnight on Sunday');
SELECT is(etl.cron_next('@monthly', 'UTC', '2026-01-15 00:00:00+00'), '2026-02-01 00:00:00+00'::timestamptz,
    '@monthly fires on the first of the next month');
SELECT is(etl.cron_next('@yearly', 'UTC', '2026-01-01 00:00:00+00'), '2027-01-01 00:00:00+00'::timestamptz,
    '@yearly fires on the next January 1');

-- defaults
SELECT is(etl.cron_next('0 0 * * *', p_after => '2026-01-01 12:00:00+00'), '2026-01-02 00:00:00+00'::timestamptz,
    'the time zone defaults to UTC');
SELECT ok(etl.cron_next('* * * * *') > now() AND etl.cron_next('* * * * *') <= now() + interval '1 minute',
    '"after" defaults to now()');
SELECT is(etl.cron_next(NULL), NULL::timestamptz, 'cron_next(NULL) is NULL');

-- ---------------------------------------------------------------- time zones
SELECT is(etl.cron_next('0 9 * * *', 'America/New_York', '2026-01-15 00:00:00+00'), '2026-01-15 14:00:00+00'::timestamptz,
    '09:00 in New York in winter (EST) is 14:00 UTC');
SELECT is(etl.cron_next('0 9 * * *', 'America/New_York', '2026-07-01 00:00:00+00'), '2026-07-01 13:00:00+00'::timestamptz,
    '09:00 in New York in summer (EDT) is 13:00 UTC');
SELECT is(etl.cron_next('0 9 * * *', 'Asia/Kolkata', '2026-01-15 00:00:00+00'), '2026-01-15 03:30:00+00'::timestamptz,
    '09:00 in Kolkata (+05:30) is 03:30 UTC');
SELECT is(etl.cron_next('30 0 * * *', 'Asia/Kolkata', '2026-01-15 00:00:00+00'), '2026-01-15 19:00:00+00'::timestamptz,
    '00:30 in Kolkata is 19:00 UTC on the previous UTC day');
SELECT is(etl.cron_next('0 0 1 * *', 'Asia/Kolkata', '2026-01-31 18:29:00+00'), '2026-01-31 18:30:00+00'::timestamptz,
    'the day and month are judged in local time, not UTC');
SELECT is(etl.cron_next('0 9 * * *', 'europe/berlin', '2026-01-15 00:00:00+00'), '2026-01-15 08:00:00+00'::timestamptz,
    'time zone names are case-insensitive');
SELECT throws_ok($$SELECT etl.cron_next('0 0 * * *', 'Mars/Olympus', '2026-01-01 00:00:00+00')$$, '22023',
    'invalid time zone "Mars/Olympus": not found in pg_timezone_names',
    'an unknown time zone is rejected, naming it');
SELECT throws_ok($$SELECT etl.cron_next('0 0 * * *', 'PST', '2026-01-01 00:00:00+00')$$, '22023',
    'invalid time zone "PST": not found in pg_timezone_names',
    'a time zone abbreviation is not a time zone name');

-- ---------------------------------------------------------------- DST, Europe/Berlin
SELECT is(etl.cron_next('30 2 * * *', 'Europe/Berlin', '2026-03-28 12:00:00+00'), '2026-03-29 01:00:00+00'::timestamptz,
    'Berlin spring forward: 02:30 does not exist and fires at 03:00 CEST (01:00 UTC)');
SELECT is(etl.cron_next('30 2 * * *', 'Europe/Berlin', '2026-03-29 01:00:00+00'), '2026-03-30 00:30:00+00'::timestamptz,
    'Berlin: the day after the gap 02:30 CEST fires normally');
SELECT is(ARRAY(SELECT etl.cron_next_n('0,30 2 * * *', 'Europe/Berlin', '2026-03-28 12:00:00+00', 3)),
    '{"2026-03-29 01:00:00+00","2026-03-30 00:00:00+00","2026-03-30 00:30:00+00"}'::timestamptz[],
    'Berlin: two wall times in the gap fire only once, at the end of the gap');
SELECT is(ARRAY(SELECT etl.cron_next_n('*/15 * * * *', 'Europe/Berlin', '2026-03-29 00:40:00+00', 3)),
    '{"2026-03-29 00:45:00+00","2026-03-29 01:00:00+00","2026-03-29 01:15:00+00"}'::timestamptz[],
    'Berlin: */15 across the spring gap fires once at 03:00 CEST and continues at 03:15');
SELECT is(etl.cron_next('30 2 * * *', 'Europe/Berlin', '2026-10-24 12:00:00+00'), '2026-10-25 00:30:00+00'::timestamptz,
    'Berlin fall back: the repeated 02:30 fires at its first occurrence (CEST, 00:30 UTC)');
SELECT is(etl.cron_next('30 2 * * *', 'Europe/Berlin', '2026-10-25 00:30:00+00'), '2026-10-26 01:30:00+00'::timestamptz,
    'Berlin fall back: the second 02:30 (CET) does not fire again; the next run is the following day');
SELECT is(ARRAY(SELECT etl.cron_next_n('*/15 * * * *', 'Europe/Berlin', '2026-10-24 23:50:00+00', 8)),
    '{"2026-10-25 00:00:00+00","2026-10-25 00:15:00+00","2026-10-25 00:30:00+00","2026-10-25 00:45:00+00",
      "2026-10-25 02:00:00+00","2026-10-25 02:15:00+00","2026-10-25 02:30:00+00","2026-10-25 02:45:00+00"}'::timestamptz[],
    'Berlin: */15 across fall back fires 02:00-02:45 once (CEST) and resumes at 03:00 CET');
SELECT is(etl.cron_next('*/15 * * * *', 'Europe/Berlin', '2026-10-25 01:20:00+00'), '2026-10-25 02:00:00+00'::timestamptz,
    'Berlin: starting inside the repeated hour, wall times that already fired are skipped');

-- ---------------------------------------------------------------- DST, America/New_York
SELECT is(etl.cron_next('30 2 * * *', 'America/New_York', '2026-03-07 12:00:00+00'), '2026-03-08 07:00:00+00'::timestamptz,
    'New York spring forward: 02:30 does not exist and fires at 03:00 EDT (07:00 UTC)');
SELECT is(ARRAY(SELECT etl.cron_next_n('*/15 * * * *', 'America/New_York', '2026-03-08 06:40:00+00', 3)),
    '{"2026-03-08 06:45:00+00","2026-03-08 07:00:00+00","2026-03-08 07:15:00+00"}'::timestamptz[],
    'New York: */15 across the gap fires 01:45 EST, then once at 03:00 EDT, then 03:15 EDT');
SELECT is(ARRAY(SELECT etl.cron_next_n('0 * * * *', 'America/New_York', '2026-03-08 05:30:00+00', 3)),
    '{"2026-03-08 06:00:00+00","2026-03-08 07:00:00+00","2026-03-08 08:00:00+00"}'::timestamptz[],
    'New York: hourly across the gap fires at 01:00 EST, 03:00 EDT, 04:00 EDT');
SELECT is(etl.cron_next('30 1 * * *', 'America/New_York', '2026-10-31 12:00:00+00'), '2026-11-01 05:30:00+00'::timestamptz,
    'New York fall back: the repeated 01:30 fires at its first occurrence (EDT, 05:30 UTC)');
SELECT is(etl.cron_next('30 1 * * *', 'America/New_York', '2026-11-01 05:30:00+00'), '2026-11-02 06:30:00+00'::timestamptz,
    'New York fall back: the second 01:30 (EST) does not fire again');
SELECT is(ARRAY(SELECT etl.cron_next_n('*/15 * * * *', 'America/New_York', '2026-11-01 04:50:00+00', 6)),
    '{"2026-11-01 05:00:00+00","2026-11-01 05:15:00+00","2026-11-01 05:30:00+00","2026-11-01 05:45:00+00",
      "2026-11-01 07:00:00+00","2026-11-01 07:15:00+00"}'::timestamptz[],
    'New York: */15 across fall back fires 01:00-01:45 once (EDT) and resumes at 02:00 EST');
SELECT is(etl.cron_next('*/15 * * * *', 'America/New_York', '2026-11-01 06:20:00+00'), '2026-11-01 07:00:00+00'::timestamptz,
    'New York: from inside the second 01:xx hour the next run is 02:00 EST');
SELECT ok((SELECT bool_and(t > prev) FROM (
              SELECT t, lag(t) OVER (ORDER BY o) AS prev
              FROM etl.cron_next_n('*/15 * * * *', 'America/New_York', '2026-10-31 12:00:00+00', 200) WITH ORDINALITY AS x(t, o)
          ) AS s WHERE prev IS NOT NULL),
    'New York: */15 over the fall-back night never goes backwards');
SELECT is((SELECT count(DISTINCT t AT TIME ZONE 'America/New_York')
           FROM etl.cron_next_n('*/15 * * * *', 'America/New_York', '2026-10-31 12:00:00+00', 200) AS t),
    200::bigint,
    'New York: */15 over the fall-back night never fires twice for one wall time');
SELECT is((SELECT count(DISTINCT t AT TIME ZONE 'Europe/Berlin')
           FROM etl.cron_next_n('*/15 * * * *', 'Europe/Berlin', '2026-10-24 12:00:00+00', 200) AS t),
    200::bigint,
    'Berlin: */15 over the fall-back night never fires twice for one wall time');

-- ---------------------------------------------------------------- never fires
SELECT throws_ok($$SELECT etl.cron_next('0 0 30 2 *', 'UTC', '2026-01-01 00:00:00+00')$$, '22023',
    'invalid cron expression "0 0 30 2 *": it never fires (no match within 8 years)',
    'February 30 never fires and raises instead of looping');
SELECT throws_ok($$SELECT etl.cron_next('0 0 31 4,6,9,11 *', 'UTC', '2026-01-01 00:00:00+00')$$, '22023',
    'invalid cron expression "0 0 31 4,6,9,11 *": it never fires (no match within 8 years)',
    'day 31 in 30-day months never fires');
SELECT throws_ok($$SELECT etl.cron_next('61 * * * *')$$, '22023',
    'invalid cron expression "61 * * * *": minute field "61" is out of range 0-59',
    'cron_next reports parse errors like cron_parse');

-- ---------------------------------------------------------------- cron_next_n
SELECT is(ARRAY(SELECT etl.cron_next_n('*/20 * * * *', 'UTC', '2026-01-01 00:50:00+00', 5)),
    '{"2026-01-01 01:00:00+00","2026-01-01 01:20:00+00","2026-01-01 01:40:00+00","2026-01-01 02:00:00+00","2026-01-01 02:20:00+00"}'::timestamptz[],
    'cron_next_n returns the next n fire times in ascending order');
SELECT is((SELECT count(*) FROM etl.cron_next_n('0 0 * * *', 'Asia/Kolkata', '2026-01-01 00:00:00+00', 40)), 40::bigint,
    'cron_next_n returns exactly n rows');
SELECT is((SELECT max(t) FROM etl.cron_next_n('0 0 * * *', 'UTC', '2026-01-01 00:00:00+00', 3) AS t),
    etl.cron_next('0 0 * * *', 'UTC', etl.cron_next('0 0 * * *', 'UTC', etl.cron_next('0 0 * * *', 'UTC', '2026-01-01 00:00:00+00'))),
    'cron_next_n chains cron_next');
SELECT is_empty($$SELECT etl.cron_next_n('* * * * *', 'UTC', '2026-01-01 00:00:00+00', 0)$$,
    'cron_next_n with n = 0 returns no rows');
SELECT throws_ok($$SELECT etl.cron_next_n('* * * * *', 'UTC', '2026-01-01 00:00:00+00', -1)$$, '22023',
    'cron_next_n: n must not be negative, got -1',
    'cron_next_n rejects a negative n');
SELECT throws_ok($$SELECT etl.cron_next_n('* * * * *', 'Nowhere/Land', '2026-01-01 00:00:00+00', 1)$$, '22023',
    'invalid time zone "Nowhere/Land": not found in pg_timezone_names',
    'cron_next_n rejects an unknown time zone');

-- ---------------------------------------------------------------- cron_describe
SELECT is(etl.cron_describe('0 2 * * *'), 'at 02:00 every day', 'describe: a daily time');
SELECT is(etl.cron_describe('*/15 * * * *'), 'every 15 minutes', 'describe: a minute step');
SELECT is(etl.cron_describe('0 9 * * MON-FRI'), 'at 09:00 on Monday through Friday', 'describe: weekdays');
SELECT is(etl.cron_describe('@hourly'), 'at minute 0 of every hour', 'describe: @hourly');
SELECT is(etl.cron_describe('@yearly'), 'at 00:00 on January 1', 'describe: @yearly');
SELECT is(etl.cron_describe('@weekly'), 'at 00:00 on Sunday', 'describe: @weekly');
SELECT is(etl.cron_describe('@monthly'), 'at 00:00 on day 1 of the month', 'describe: @monthly');
SELECT is(etl.cron_describe('* * * * *'), 'every minute', 'describe: every minute');
SELECT is(etl.cron_describe('0 0 13 * FRI'), 'at 00:00 on day 13 of the month or on Friday',
    'describe: both day fields restricted reads as "or"');
SELECT is(etl.cron_describe('0 9,17 * * *'), 'at 09:00 and 17:00 every day', 'describe: two times a day');
SELECT is(etl.cron_describe('0 */2 * * *'), 'at minute 0 of every 2nd hour', 'describe: an hour step');
SELECT is(etl.cron_describe('*/7 * * * *'), 'at minutes 0, 7, 14, 21, 28, 35, 42, 49 and 56 of every hour',
    'describe: a step that does not divide the hour is listed, not called "every 7 minutes"');
SELECT is(etl.cron_describe('*/15 9-17 * * 1-5'), 'every 15 minutes of hours 9 through 17 on Monday through Friday',
    'describe: steps within an hour range on weekdays');
SELECT is(etl.cron_describe('0 0 1 1-3 *'), 'at 00:00 on day 1 of the month in January through March',
    'describe: a month range');
SELECT is(etl.cron_describe('0 0 * * FRI-SUN'), 'at 00:00 on Friday through Sunday',
    'describe: a weekend-spanning day range keeps Sunday last');
SELECT throws_ok($$SELECT etl.cron_describe('0 0 32 * *')$$, '22023',
    'invalid cron expression "0 0 32 * *": day-of-month field "32" is out of range 1-31',
    'cron_describe rejects invalid expressions like cron_parse');

SELECT * FROM finish();
ROLLBACK;
