-- 110_cron.sql: cron expressions in PL/pgSQL (parse, next fire time, describe).
--
-- Syntax: five whitespace-separated fields
--     minute (0-59)  hour (0-23)  day-of-month (1-31)  month (1-12)  day-of-week (0-7)
-- each a comma list of items; an item is "*", "a", "a-b", "*/n", "a-b/n" or
-- "a/n" (= a-max/n). Months may be written JAN-DEC and days of week SUN-SAT
-- (case-insensitive, also inside ranges); day-of-week 7 is Sunday like 0, and
-- SUN ending a range counts as 7 (FRI-SUN = 5-7).
-- Macros: @yearly = @annually = "0 0 1 1 *", @monthly = "0 0 1 * *",
-- @weekly = "0 0 * * 0", @daily = @midnight = "0 0 * * *", @hourly = "0 * * * *".
-- Not supported (rejected): seconds/years fields, "?", "L", "W", "#", @reboot.
--
-- Day rule (POSIX/Vixie): when day-of-month AND day-of-week are both
-- restricted, a day matches if EITHER matches; otherwise both must match.
-- "Restricted" means the field is not literally "*" ("*/2" is restricted).
--
-- Time zones: fire times are wall-clock times of the given IANA zone
-- (validated against pg_timezone_names). DST rule:
--   * a wall time inside a spring-forward gap fires at the first instant after
--     the gap (the transition itself), once, however many wall times of the
--     schedule fall into the gap (they all map to that one instant);
--   * a wall time that occurs twice (fall-back) fires once, at its FIRST
--     occurrence (the earlier UTC instant).
-- Formally a wall time L fires at min{t : local(t) >= L}. That map is
-- monotonic, so fire times never go backwards and never repeat.
-- PostgreSQL's own "timestamp AT TIME ZONE" does not follow this rule (it maps
-- a gap time with the pre-transition offset, i.e. 02:30 -> 03:30, and an
-- ambiguous time to its second occurrence), hence etl._cron_wall_to_instant.
--
-- Errors: invalid expressions, unknown time zones and expressions that never
-- fire raise invalid_parameter_value (22023) with a message naming the
-- expression, the field and the offending value.

-- The parsed form. Arrays are sorted and duplicate-free; dows uses 0-6
-- (Sunday = 0). dom_star/dow_star record whether the field was literally "*",
-- which decides the day rule above.
do $cron_type$
begin
    if pg_catalog.to_regtype('etl.cron_spec') is null then
        create type etl.cron_spec as (
            minutes  int[],
            hours    int[],
            days     int[],
            months   int[],
            dows     int[],
            dom_star boolean,
            dow_star boolean
        );
    end if;
end
$cron_type$;

comment on type etl.cron_spec is
  'A parsed cron expression (etl.cron_parse): sorted allowed minutes, hours, days of month, '
  'months and days of week (0-6, Sunday = 0), and whether day-of-month / day-of-week were "*".';


-- One value of a field: a number, or a name from p_names (value = index + p_min - 1).
create or replace function etl._cron_parse_value(
    p_expr  text,
    p_label text,
    p_token text,
    p_min   int,
    p_max   int,
    p_names text[]
)
returns int
language plpgsql
immutable
parallel safe
set search_path = ''
as $function$
declare
    v_value int;
    v_index int;
begin
    if p_token ~ '^[0-9]+$' then
        -- Length guard first: a 20-digit number would overflow int.
        if length(ltrim(p_token, '0')) > 4 or p_token::int < p_min or p_token::int > p_max then
            raise exception 'invalid cron expression "%": % field "%" is out of range %-%',
                p_expr, p_label, p_token, p_min, p_max
                using errcode = 'invalid_parameter_value';
        end if;
        return p_token::int;
    end if;

    if p_names is not null then
        v_index := array_position(p_names, upper(p_token));
        if v_index is not null then
            v_value := v_index + p_min - 1;
            return v_value;
        end if;
        raise exception 'invalid cron expression "%": % field "%" is not a number or name',
            p_expr, p_label, p_token
            using errcode = 'invalid_parameter_value';
    end if;

    raise exception 'invalid cron expression "%": % field "%" is not a number',
        p_expr, p_label, p_token
        using errcode = 'invalid_parameter_value';
end
$function$;

comment on function etl._cron_parse_value(text, text, text, int, int, text[]) is
  'Internal to etl.cron_parse: one number or name of a cron field, range-checked; '
  'raises 22023 naming the expression, field and token.';


-- One field: comma list of *, a, a-b, */n, a-b/n, a/n. Returns sorted distinct values.
create or replace function etl._cron_parse_field(
    p_expr     text,
    p_label    text,
    p_field    text,
    p_min      int,
    p_max      int,
    p_star_max int,
    p_names    text[]
)
returns int[]
language plpgsql
immutable
parallel safe
set search_path = ''
as $function$
declare
    v_item   text;
    v_parts  text[];
    v_bounds text[];
    v_lo     int;
    v_hi     int;
    v_step   int;
    v_values int[] := '{}';
begin
    foreach v_item in array string_to_array(p_field, ',') loop
        if v_item = '' then
            raise exception 'invalid cron expression "%": % field "%" has an empty list element',
                p_expr, p_label, p_field
                using errcode = 'invalid_parameter_value';
        end if;

        v_parts := string_to_array(v_item, '/');
        if cardinality(v_parts) > 2 then
            raise exception 'invalid cron expression "%": % field "%" has more than one step',
                p_expr, p_label, v_item
                using errcode = 'invalid_parameter_value';
        end if;

        v_step := 1;
        if cardinality(v_parts) = 2 then
            if v_parts[2] !~ '^[0-9]+$' or length(v_parts[2]) > 4 then
                raise exception 'invalid cron expression "%": % field "%" has step "%", which is not a number from 1 to 9999',
                    p_expr, p_label, v_item, v_parts[2]
                    using errcode = 'invalid_parameter_value';
            end if;
            v_step := v_parts[2]::int;
            if v_step = 0 then
                raise exception 'invalid cron expression "%": % field "%" has step 0; the step must be at least 1',
                    p_expr, p_label, v_item
                    using errcode = 'invalid_parameter_value';
            end if;
        end if;

        if v_parts[1] = '*' then
            v_lo := p_min;
            v_hi := p_star_max;
        elsif strpos(v_parts[1], '-') > 0 then
            v_bounds := string_to_array(v_parts[1], '-');
            if cardinality(v_bounds) <> 2 or v_bounds[1] = '' or v_bounds[2] = '' then
                raise exception 'invalid cron expression "%": % field "%" is not a valid range',
                    p_expr, p_label, v_item
                    using errcode = 'invalid_parameter_value';
            end if;
            v_lo := etl._cron_parse_value(p_expr, p_label, v_bounds[1], p_min, p_max, p_names);
            v_hi := etl._cron_parse_value(p_expr, p_label, v_bounds[2], p_min, p_max, p_names);
            -- "FRI-SUN": the name SUN ending a day-of-week range means 7, not 0.
            if p_label = 'day-of-week' and upper(v_bounds[2]) = 'SUN' and v_lo > 0 then
                v_hi := 7;
            end if;
            if v_lo > v_hi then
                raise exception 'invalid cron expression "%": % field "%" is a reversed range (% is greater than %)',
                    p_expr, p_label, v_item, v_lo, v_hi
                    using errcode = 'invalid_parameter_value';
            end if;
        else
            v_lo := etl._cron_parse_value(p_expr, p_label, v_parts[1], p_min, p_max, p_names);
            -- "a/n" means "a-max/n"; a plain "a" is just a.
            v_hi := case when cardinality(v_parts) = 2 then p_max else v_lo end;
        end if;

        for v_i in v_lo .. v_hi by v_step loop
            v_values := v_values || v_i;
        end loop;
    end loop;

    return array(select distinct v from unnest(v_values) as v order by v);
end
$function$;

comment on function etl._cron_parse_field(text, text, text, int, int, int, text[]) is
  'Internal to etl.cron_parse: expands one cron field (lists, ranges, steps, names) '
  'into its sorted distinct values; raises 22023 on bad syntax, step 0, reversed ranges '
  'and out-of-range values.';


create or replace function etl.cron_parse(p_expr text)
returns etl.cron_spec
language plpgsql
immutable
strict
parallel safe
security definer  -- (it calls the internal _cron_* functions, which no role may call)
set search_path = ''
as $function$
declare
    v_text   text := btrim(p_expr);
    v_fields text[];
    v_spec   etl.cron_spec;
begin
    -- Macros expand to plain five-field text, so "@daily" and "0 0 * * *"
    -- give equal specs.
    if left(v_text, 1) = '@' then
        v_text := case lower(v_text)
            when '@yearly'   then '0 0 1 1 *'
            when '@annually' then '0 0 1 1 *'
            when '@monthly'  then '0 0 1 * *'
            when '@weekly'   then '0 0 * * 0'
            when '@daily'    then '0 0 * * *'
            when '@midnight' then '0 0 * * *'
            when '@hourly'   then '0 * * * *'
        end;
        if v_text is null then
            raise exception 'invalid cron expression "%": unknown macro (supported: @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)',
                p_expr
                using errcode = 'invalid_parameter_value';
        end if;
    end if;

    v_fields := case when v_text = '' then '{}'::text[]
                     else regexp_split_to_array(v_text, '\s+') end;
    if cardinality(v_fields) <> 5 then
        raise exception 'invalid cron expression "%": expected 5 fields, got %',
            p_expr, cardinality(v_fields)
            using errcode = 'invalid_parameter_value';
    end if;

    v_spec.minutes := etl._cron_parse_field(p_expr, 'minute', v_fields[1], 0, 59, 59, null);
    v_spec.hours   := etl._cron_parse_field(p_expr, 'hour', v_fields[2], 0, 23, 23, null);
    v_spec.days    := etl._cron_parse_field(p_expr, 'day-of-month', v_fields[3], 1, 31, 31, null);
    v_spec.months  := etl._cron_parse_field(p_expr, 'month', v_fields[4], 1, 12, 12,
        array['JAN','FEB','MAR','APR','MAY','JUN','JUL','AUG','SEP','OCT','NOV','DEC']);
    -- 0-7 accepted, "*" means 0-6; 7 (Sunday) is folded onto 0 below.
    v_spec.dows    := etl._cron_parse_field(p_expr, 'day-of-week', v_fields[5], 0, 7, 6,
        array['SUN','MON','TUE','WED','THU','FRI','SAT']);
    v_spec.dows := array(select distinct d % 7 from unnest(v_spec.dows) as d order by 1);
    v_spec.dom_star := v_fields[3] = '*';
    v_spec.dow_star := v_fields[5] = '*';
    return v_spec;
end
$function$;

comment on function etl.cron_parse(text) is
  'Parses a 5-field cron expression (minute hour day-of-month month day-of-week) into '
  'etl.cron_spec. Supports *, a, a-b, */n, a-b/n, a/n, comma lists, JAN-DEC, SUN-SAT '
  '(case-insensitive, also in ranges), day-of-week 7 = Sunday and the macros @yearly, '
  '@annually, @monthly, @weekly, @daily, @midnight, @hourly. Invalid input raises 22023 '
  '(invalid_parameter_value) naming the field and value. NULL in, NULL out.';


-- Smallest element of a sorted array that is >= p_from, or NULL.
create or replace function etl._cron_next_value(p_values int[], p_from int)
returns int
language plpgsql
immutable
strict
parallel safe
set search_path = ''
as $function$
declare
    v int;
begin
    foreach v in array p_values loop
        if v >= p_from then
            return v;
        end if;
    end loop;
    return null;
end
$function$;

comment on function etl._cron_next_value(int[], int) is
  'Internal to etl.cron_next: the smallest element >= p_from of a sorted int array, or NULL.';


-- Raises 22023 unless p_tz is a time zone name listed in pg_timezone_names.
create or replace function etl._cron_assert_tz(p_tz text)
returns void
language plpgsql
stable
set search_path = ''
as $function$
begin
    if p_tz = 'UTC' then
        return;
    end if;

    -- Fast path: scanning pg_timezone_names loads every zone file (~50 ms).
    -- An Area/Location name that PostgreSQL can load is necessarily a zone
    -- file, hence listed there (abbreviations and POSIX rule strings never
    -- have this shape; right/ zones are the leap-second ones the view hides).
    if p_tz ~ '^[A-Za-z]+(/[A-Za-z0-9_+-]+)+$' and p_tz !~* '^right/' then
        begin
            perform now() at time zone p_tz;
            return;
        exception when invalid_parameter_value then
            null;  -- fall through to the authoritative check and its message
        end;
    end if;

    -- Case-insensitive like PostgreSQL's own zone lookup.
    if not exists (select from pg_catalog.pg_timezone_names as z
                   where lower(z.name) = lower(p_tz)) then
        raise exception 'invalid time zone "%": not found in pg_timezone_names', p_tz
            using errcode = 'invalid_parameter_value',
                  hint = 'Use an IANA zone name such as UTC, Europe/Berlin or America/New_York.';
    end if;
end
$function$;

comment on function etl._cron_assert_tz(text) is
  'Internal to etl.cron_next: raises 22023 (invalid_parameter_value) unless the argument '
  'is a time zone name from pg_timezone_names (case-insensitive).';


-- The instant at which wall time p_local of zone p_tz fires:
-- min{t : local(t) >= p_local}, i.e. the first occurrence of an ambiguous wall
-- time and the end of the gap for a non-existent one.
create or replace function etl._cron_wall_to_instant(p_local timestamp, p_tz text)
returns timestamptz
language plpgsql
stable
strict
parallel safe
set search_path = ''
as $function$
declare
    -- p_local read as UTC; the real instant is v_u minus the zone's offset then.
    v_u      timestamptz := p_local at time zone 'UTC';
    v_cands  timestamptz[];
    v_c      timestamptz;
    v_best   timestamptz;
    v_lo     timestamptz;
    v_hi     timestamptz;
    v_lo_s   bigint;
    v_hi_s   bigint;
    v_mid_s  bigint;
begin
    -- Candidate instants: p_local interpreted with the offsets in force a day
    -- before and a day after (they bracket any DST transition near p_local),
    -- plus PostgreSQL's own pick. Intervals here are pure hours, so the
    -- arithmetic does not depend on the session time zone.
    v_cands := array[
        v_u - ((v_u - interval '24 hours') at time zone p_tz
               - (v_u - interval '24 hours') at time zone 'UTC'),
        v_u - ((v_u + interval '24 hours') at time zone p_tz
               - (v_u + interval '24 hours') at time zone 'UTC'),
        p_local at time zone p_tz
    ];

    -- Existing wall time: the earliest candidate that really shows p_local.
    foreach v_c in array v_cands loop
        if (v_c at time zone p_tz) = p_local and (v_best is null or v_c < v_best) then
            v_best := v_c;
        end if;
    end loop;
    if v_best is not null then
        return v_best;
    end if;

    -- Gap: the transition instant T lies between a candidate showing an
    -- earlier wall time and one showing a later one. Bisect on whole seconds
    -- (tz data has whole-second transitions) for the first t with local(t) > p_local.
    foreach v_c in array v_cands loop
        if (v_c at time zone p_tz) < p_local then
            v_lo := greatest(v_lo, v_c);
        else
            v_hi := least(v_hi, v_c);
        end if;
    end loop;
    if v_lo is null or v_hi is null then
        return p_local at time zone p_tz;  -- not reachable with real tz data
    end if;

    v_lo_s := floor(extract(epoch from v_lo))::bigint;
    v_hi_s := ceil(extract(epoch from v_hi))::bigint;
    while v_hi_s - v_lo_s > 1 loop
        v_mid_s := (v_lo_s + v_hi_s) / 2;
        if (to_timestamp(v_mid_s) at time zone p_tz) > p_local then
            v_hi_s := v_mid_s;
        else
            v_lo_s := v_mid_s;
        end if;
    end loop;
    return to_timestamp(v_hi_s);
end
$function$;

comment on function etl._cron_wall_to_instant(timestamp, text) is
  'Internal to etl.cron_next: maps a wall-clock time of a zone to the instant it fires: '
  'itself if it exists once, its FIRST occurrence if it occurs twice (fall-back), and the '
  'first instant after the gap if it does not exist (spring-forward).';


-- Core search on an already parsed spec and validated zone.
create or replace function etl._cron_next_from_spec(
    p_spec  etl.cron_spec,
    p_tz    text,
    p_after timestamptz,
    p_expr  text
)
returns timestamptz
language plpgsql
stable
set search_path = ''
as $function$
declare
    v_t      timestamp;
    v_limit  timestamp;
    v_month  int;
    v_next   int;
    v_dom_ok boolean;
    v_dow_ok boolean;
    v_hour   int;
    v_fire   timestamptz;
begin
    if not isfinite(p_after) then
        raise exception 'cron_next: after must be a finite timestamp, got %', p_after
            using errcode = 'invalid_parameter_value';
    end if;

    -- Search wall-clock minutes of p_tz. Every wall time up to local(p_after)
    -- fires at or before p_after (the wall->instant map is monotonic), so the
    -- first candidate is the next whole minute.
    v_t := date_trunc('minute', p_after at time zone p_tz) + interval '1 minute';
    -- The longest real gap between fire times is 8 years: Feb 29 across a
    -- skipped century leap year (2096-02-29 -> 2104-02-29).
    v_limit := v_t + interval '8 years' + interval '1 day';

    loop
        if v_t > v_limit then
            raise exception 'invalid cron expression "%": it never fires (no match within 8 years)', p_expr
                using errcode = 'invalid_parameter_value';
        end if;

        -- Month: jump to day 1 of the next allowed month.
        v_month := extract(month from v_t)::int;
        if not v_month = any (p_spec.months) then
            v_next := etl._cron_next_value(p_spec.months, v_month);
            if v_next is null then
                v_t := make_timestamp(extract(year from v_t)::int + 1, p_spec.months[1], 1, 0, 0, 0);
            else
                v_t := make_timestamp(extract(year from v_t)::int, v_next, 1, 0, 0, 0);
            end if;
            continue;
        end if;

        -- Day: cron's OR rule when both day fields are restricted.
        v_dom_ok := extract(day from v_t)::int = any (p_spec.days);
        v_dow_ok := extract(dow from v_t)::int = any (p_spec.dows);
        if not (case when p_spec.dom_star or p_spec.dow_star then v_dom_ok and v_dow_ok
                     else v_dom_ok or v_dow_ok end) then
            v_t := date_trunc('day', v_t) + interval '1 day';
            continue;
        end if;

        -- Hour: next allowed hour today, else tomorrow.
        v_hour := extract(hour from v_t)::int;
        v_next := etl._cron_next_value(p_spec.hours, v_hour);
        if v_next is null then
            v_t := date_trunc('day', v_t) + interval '1 day';
            continue;
        end if;
        if v_next > v_hour then
            v_t := date_trunc('day', v_t) + make_interval(hours => v_next);
        end if;

        -- Minute: next allowed minute this hour, else the next hour.
        v_next := etl._cron_next_value(p_spec.minutes, extract(minute from v_t)::int);
        if v_next is null then
            v_t := date_trunc('hour', v_t) + interval '1 hour';
            continue;
        end if;
        v_t := date_trunc('hour', v_t) + make_interval(mins => v_next);

        -- v_t matches every field. Its instant can still be <= p_after when
        -- p_after lies in the second pass of a repeated (fall-back) hour: the
        -- first pass already fired it, so keep searching.
        v_fire := etl._cron_wall_to_instant(v_t, p_tz);
        if v_fire > p_after then
            return v_fire;
        end if;
        v_t := v_t + interval '1 minute';
    end loop;
end
$function$;

comment on function etl._cron_next_from_spec(etl.cron_spec, text, timestamptz, text) is
  'Internal to etl.cron_next / etl.cron_next_n: next fire time strictly after p_after '
  'for a parsed spec in an already validated zone; p_expr is only used in error messages.';


create or replace function etl.cron_next(
    p_expr  text,
    p_tz    text default 'UTC',
    p_after timestamptz default now()
)
returns timestamptz
language plpgsql
stable
strict
security definer  -- (it calls the internal _cron_* functions, which no role may call)
set search_path = ''
as $function$
declare
    v_spec etl.cron_spec := etl.cron_parse(p_expr);
begin
    perform etl._cron_assert_tz(p_tz);
    return etl._cron_next_from_spec(v_spec, p_tz, p_after, p_expr);
end
$function$;

comment on function etl.cron_next(text, text, timestamptz) is
  'First fire time of a cron expression strictly after p_after (default now()), evaluated '
  'in wall-clock time of time zone p_tz (default ''UTC'', must be in pg_timezone_names). '
  'DST: a wall time in a spring-forward gap fires once, at the first instant after the gap; '
  'a wall time that occurs twice at fall-back fires once, at its first occurrence. Day rule: '
  'if both day-of-month and day-of-week are restricted, either may match. Raises 22023 for an '
  'invalid expression, an unknown time zone, or an expression that never fires (no match in '
  '8 years). Searches field by field, not minute by minute. NULL arguments give NULL.';


create or replace function etl.cron_next_n(
    p_expr  text,
    p_tz    text,
    p_after timestamptz,
    p_n     int
)
returns setof timestamptz
language plpgsql
stable
strict
security definer  -- (it calls the internal _cron_* functions, which no role may call)
set search_path = ''
as $function$
declare
    v_spec etl.cron_spec := etl.cron_parse(p_expr);
    v_t    timestamptz := p_after;
begin
    if p_n < 0 then
        raise exception 'cron_next_n: n must not be negative, got %', p_n
            using errcode = 'invalid_parameter_value';
    end if;
    perform etl._cron_assert_tz(p_tz);
    -- Parse and validate once, then chain: each fire time is the next "after".
    for v_i in 1 .. p_n loop
        v_t := etl._cron_next_from_spec(v_spec, p_tz, v_t, p_expr);
        return next v_t;
    end loop;
end
$function$;

comment on function etl.cron_next_n(text, text, timestamptz, int) is
  'The next p_n fire times (ascending, each strictly after the previous) of a cron expression '
  'strictly after p_after, in wall-clock time of zone p_tz; same rules as etl.cron_next '
  '(DST: gap wall times fire once at the end of the gap, repeated wall times once at their '
  'first occurrence). Raises 22023 for bad input or a negative p_n.';


-- The latest fire time in [p_from, p_to], by bisection: a schedule that missed a million fire
-- times (policy latest) finds its last one in ~40 steps instead of walking them all.
create or replace function etl._cron_last_fire(
    p_expr text,
    p_tz   text,
    p_from timestamptz,
    p_to   timestamptz
)
returns timestamptz
language plpgsql
stable
strict
set search_path = ''
as $function$
declare
    v_spec etl.cron_spec := etl.cron_parse(p_expr);
    -- Invariant: a fire time lies in (v_lo, v_hi]; the answer is the last one there.
    v_lo   timestamptz := p_from - interval '1 microsecond';
    v_hi   timestamptz := p_to;
    v_mid  timestamptz;
    v_t    timestamptz;
    v_next timestamptz;
begin
    perform etl._cron_assert_tz(p_tz);
    if etl._cron_next_from_spec(v_spec, p_tz, v_lo, p_expr) > v_hi then
        return null;
    end if;
    -- Epoch arithmetic: interval halves would add calendar days in the session's zone.
    while v_hi - v_lo > interval '1 minute' loop
        v_mid := pg_catalog.to_timestamp((extract(epoch from v_lo) + extract(epoch from v_hi)) / 2);
        if etl._cron_next_from_spec(v_spec, p_tz, v_mid, p_expr) <= v_hi then
            v_lo := v_mid;
        else
            v_hi := v_mid;
        end if;
    end loop;
    -- At most a minute left: a fire time or two (wall minutes never map closer together).
    v_t := etl._cron_next_from_spec(v_spec, p_tz, v_lo, p_expr);
    loop
        v_next := etl._cron_next_from_spec(v_spec, p_tz, v_t, p_expr);
        exit when v_next > v_hi;
        v_t := v_next;
    end loop;
    return v_t;
end
$function$;

comment on function etl._cron_last_fire(text, text, timestamptz, timestamptz) is
  'Internal to etl.tick (misfire policy latest): the latest fire time t of a cron expression in '
  'zone p_tz with p_from <= t <= p_to, or NULL when there is none; found by bisection, so its cost '
  'does not grow with the number of fire times in the range. Raises 22023 like etl.cron_next.';


-- Joins words as "a", "a and b", "a, b and c".
create or replace function etl._cron_join(p_items text[])
returns text
language plpgsql
immutable
strict
parallel safe
set search_path = ''
as $function$
declare
    v_n int := cardinality(p_items);
begin
    if v_n <= 1 then
        return coalesce(p_items[1], '');
    end if;
    return array_to_string(p_items[1:v_n - 1], ', ') || ' and ' || p_items[v_n];
end
$function$;

comment on function etl._cron_join(text[]) is
  'Internal to etl.cron_describe: joins items as "a", "a and b", "a, b and c".';


create or replace function etl._cron_name(p_value int, p_names text[], p_base int)
returns text
language plpgsql
immutable
parallel safe
set search_path = ''
as $function$
begin
    return coalesce(p_names[p_value - p_base + 1], p_value::text);
end
$function$;

comment on function etl._cron_name(int, text[], int) is
  'Internal to etl.cron_describe: the name of a field value, or the number when no names apply.';

-- Lists values with runs of 3 or more folded into "x through y";
-- p_names (if given) maps value v to p_names[v - p_base + 1].
create or replace function etl._cron_list(p_values int[], p_names text[], p_base int)
returns text
language plpgsql
immutable
parallel safe
set search_path = ''
as $function$
declare
    v_items text[] := '{}';
    v_i     int := 1;
    v_j     int;
    v_n     int := cardinality(p_values);
begin
    while v_i <= v_n loop
        v_j := v_i;
        while v_j < v_n and p_values[v_j + 1] = p_values[v_j] + 1 loop
            v_j := v_j + 1;
        end loop;
        if v_j - v_i >= 2 then
            v_items := v_items || (etl._cron_name(p_values[v_i], p_names, p_base)
                                   || ' through ' || etl._cron_name(p_values[v_j], p_names, p_base));
        else
            for v_k in v_i .. v_j loop
                v_items := v_items || etl._cron_name(p_values[v_k], p_names, p_base);
            end loop;
        end if;
        v_i := v_j + 1;
    end loop;
    return etl._cron_join(v_items);
end
$function$;

comment on function etl._cron_list(int[], text[], int) is
  'Internal to etl.cron_describe: lists field values, folding runs of 3+ into "x through y".';


-- n when p_values = {0, n, 2n, ...} covers a whole period evenly (so "every n"
-- is exact, also across the wrap-around), else NULL.
create or replace function etl._cron_uniform_step(p_values int[], p_period int)
returns int
language plpgsql
immutable
strict
parallel safe
set search_path = ''
as $function$
declare
    v_step int;
begin
    if cardinality(p_values) < 2 or p_values[1] <> 0 then
        return null;
    end if;
    v_step := p_values[2];
    if p_period % v_step <> 0 or cardinality(p_values) <> p_period / v_step then
        return null;
    end if;
    for v_i in 1 .. cardinality(p_values) loop
        if p_values[v_i] <> (v_i - 1) * v_step then
            return null;
        end if;
    end loop;
    return v_step;
end
$function$;

comment on function etl._cron_uniform_step(int[], int) is
  'Internal to etl.cron_describe: n if the values are exactly 0, n, 2n, ... over a period '
  'divisible by n, else NULL.';


create or replace function etl._cron_ordinal(p_n int)
returns text
language plpgsql
immutable
strict
parallel safe
set search_path = ''
as $function$
begin
    return p_n::text || case
        when p_n % 100 between 11 and 13 then 'th'
        when p_n % 10 = 1 then 'st'
        when p_n % 10 = 2 then 'nd'
        when p_n % 10 = 3 then 'rd'
        else 'th' end;
end
$function$;

comment on function etl._cron_ordinal(int) is
  'Internal to etl.cron_describe: 1st, 2nd, 3rd, 4th, 11th, 22nd, ...';


create or replace function etl.cron_describe(p_expr text)
returns text
language plpgsql
immutable
strict
parallel safe
security definer  -- (it calls the internal _cron_* functions, which no role may call)
set search_path = ''
as $function$
declare
    c_months constant text[] := array['January','February','March','April','May','June','July',
                                      'August','September','October','November','December'];
    c_days   constant text[] := array['Sunday','Monday','Tuesday','Wednesday','Thursday',
                                      'Friday','Saturday'];
    v_spec     etl.cron_spec := etl.cron_parse(p_expr);
    v_step     int;
    v_clock    boolean := false;  -- time phrase is "at HH:MM[, ...]"
    v_time     text;
    v_dom      text;
    v_dow      text;
    v_day      text;
    v_month    text := '';
    v_named    boolean := false;
    v_all_dom  boolean := cardinality(v_spec.days) = 31;
    v_all_dow  boolean := cardinality(v_spec.dows) = 7;
begin
    -- Time of day.
    if cardinality(v_spec.minutes) = 1 and cardinality(v_spec.hours) <= 4 then
        v_clock := true;
        v_time := 'at ' || etl._cron_join(array(
            select lpad(h::text, 2, '0') || ':' || lpad(v_spec.minutes[1]::text, 2, '0')
            from unnest(v_spec.hours) as h order by h));
    else
        v_step := etl._cron_uniform_step(v_spec.minutes, 60);
        v_time := case
            when cardinality(v_spec.minutes) = 60 then 'every minute'
            when v_step is not null then 'every ' || v_step || ' minutes'
            when cardinality(v_spec.minutes) = 1 then 'at minute ' || v_spec.minutes[1]
            else 'at minutes ' || etl._cron_list(v_spec.minutes, null, 0) end;
        v_step := etl._cron_uniform_step(v_spec.hours, 24);
        if cardinality(v_spec.hours) = 24 then
            if v_time like 'at %' then
                v_time := v_time || ' of every hour';
            end if;
        elsif v_step is not null then
            v_time := v_time || ' of every ' || etl._cron_ordinal(v_step) || ' hour';
        else
            v_time := v_time || ' of hour' || case when cardinality(v_spec.hours) > 1 then 's' else '' end
                      || ' ' || etl._cron_list(v_spec.hours, null, 0);
        end if;
    end if;

    -- Days: NULL means every day (mirrors the matching rule of cron_next).
    if cardinality(v_spec.days) = 1 and cardinality(v_spec.months) = 1 and v_spec.dow_star then
        v_dom := 'on ' || c_months[v_spec.months[1]] || ' ' || v_spec.days[1];
        v_named := true;  -- "on January 1" already says the month
    elsif cardinality(v_spec.days) = 1 then
        v_dom := 'on day ' || v_spec.days[1] || ' of the month';
    else
        v_dom := 'on days ' || etl._cron_list(v_spec.days, null, 1) || ' of the month';
    end if;
    -- Weekend-spanning sets read better with Sunday last (Friday through Sunday).
    if 0 = any (v_spec.dows) and 6 = any (v_spec.dows) then
        v_dow := 'on ' || etl._cron_list(array_remove(v_spec.dows, 0) || 7, c_days || 'Sunday'::text, 0);
    else
        v_dow := 'on ' || etl._cron_list(v_spec.dows, c_days, 0);
    end if;
    if v_spec.dom_star or v_spec.dow_star then
        -- AND rule; a "*" field or a full field matches every day.
        v_day := case
            when (v_spec.dom_star or v_all_dom) and (v_spec.dow_star or v_all_dow) then null
            when v_spec.dow_star or v_all_dow then v_dom
            else v_dow end;
    elsif v_all_dom or v_all_dow then
        v_day := null;  -- OR rule with a full field: every day
    else
        v_day := v_dom || ' or ' || v_dow;
    end if;

    if cardinality(v_spec.months) < 12 and not (v_named and v_day = v_dom) then
        v_month := ' in ' || etl._cron_list(v_spec.months, c_months, 1);
    end if;

    return v_time
        || case when v_day is not null then ' ' || v_day
                when v_clock or v_month <> '' then ' every day'
                else '' end
        || v_month;
end
$function$;

comment on function etl.cron_describe(text) is
  'Short English summary of a cron expression, e.g. "0 2 * * *" -> "at 02:00 every day", '
  '"*/15 * * * *" -> "every 15 minutes", "0 9 * * MON-FRI" -> "at 09:00 on Monday through '
  'Friday", "@hourly" -> "at minute 0 of every hour". Complex fields are listed value by value. '
  'Raises 22023 for an invalid expression (see etl.cron_parse). NULL in, NULL out.';
