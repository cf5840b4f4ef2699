-- Parameters: validated against the job's declared schema (etl.job_parameters), defaults filled in.

create or replace function etl._is_iso_date(p_text text)
returns boolean
language plpgsql
immutable
set search_path = ''
as $$
begin
  return p_text ~ '^\d{4}-\d{2}-\d{2}$'
     and pg_catalog.to_char(pg_catalog.to_date(p_text, 'YYYY-MM-DD'), 'YYYY-MM-DD') = p_text;
exception when datetime_field_overflow or invalid_datetime_format then
  return false;
end;
$$;
comment on function etl._is_iso_date(text) is 'True for a real calendar date written YYYY-MM-DD (2024-02-30 is not).';

create or replace function etl._is_iso_timestamp(p_text text)
returns boolean
language plpgsql
stable  -- (the cast reads the session's time zone for a time without one)
set search_path = ''
as $$
begin
  -- An ISO 8601 date and time (seconds, fraction and zone optional) that is a real instant:
  -- 2024-13-45 99:99 and trailing garbage are not.
  if p_text !~ '^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?$' then
    return false;
  end if;
  perform p_text::timestamptz;
  return true;
exception when datetime_field_overflow or invalid_datetime_format then
  return false;
end;
$$;
comment on function etl._is_iso_timestamp(text) is
  'True for a real instant written YYYY-MM-DD[T ]HH:MM[:SS[.frac]][Z|+HH[:MM]] (2024-13-45 99:99 is not).';

create or replace function etl._validate_params(p_job_id bigint, p_params jsonb, p_mode text)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  v_slug text;
  v_out jsonb := coalesce(p_params, '{}');
  v_key text;
  v_known text[];
  p record;
  v_value jsonb;
  v_ok boolean;
begin
  -- Most jobs declare no parameters and get none: nothing to check or fill in. (Two IFs: an
  -- expression that a known parameter folds to false gets a fresh plan on every call.)
  if v_out = '{}'::jsonb then
    if not exists (select 1 from etl.job_parameters jp where jp.job_id = p_job_id) then
      return v_out;
    end if;
  end if;
  select slug into v_slug from etl.jobs where job_id = p_job_id;
  if pg_catalog.jsonb_typeof(v_out) <> 'object' then
    raise exception 'parameters of job "%" must be a JSON object, got %', v_slug, pg_catalog.jsonb_typeof(v_out)
      using errcode = 'invalid_parameter_value';
  end if;
  select coalesce(pg_catalog.array_agg(distinct name), '{}') into v_known
    from etl.job_parameters where job_id = p_job_id;
  for v_key in select pg_catalog.jsonb_object_keys(v_out) loop
    if not v_key = any (v_known) then
      raise exception 'parameter "%" is not a parameter of job "%" (known: %)',
        v_key, v_slug, coalesce(nullif(pg_catalog.array_to_string(v_known, ', '), ''), 'none')
        using errcode = 'invalid_parameter_value';
    end if;
  end loop;
  -- A mode-specific declaration wins over mode all.
  for p in
    select distinct on (jp.name) jp.*
      from etl.job_parameters jp
     where jp.job_id = p_job_id and jp.mode in ('all', p_mode)
     order by jp.name, (jp.mode = 'all')
  loop
    v_value := v_out -> p.name;
    if v_value is null or v_value = 'null'::jsonb then
      if p.default_value is not null then
        v_out := v_out || pg_catalog.jsonb_build_object(p.name, p.default_value);
        continue;
      elsif p.required then
        raise exception 'parameter "%" of job "%" is required (type %)', p.name, v_slug, p.data_type
          using errcode = 'invalid_parameter_value';
      end if;
      continue;
    end if;
    v_ok := case p.data_type
      when 'string' then pg_catalog.jsonb_typeof(v_value) = 'string'
      when 'integer' then pg_catalog.jsonb_typeof(v_value) = 'number'
                          and (v_value::text)::numeric = pg_catalog.trunc((v_value::text)::numeric)
      when 'number' then pg_catalog.jsonb_typeof(v_value) = 'number'
      when 'boolean' then pg_catalog.jsonb_typeof(v_value) = 'boolean'
      when 'object' then pg_catalog.jsonb_typeof(v_value) = 'object'
      when 'array' then pg_catalog.jsonb_typeof(v_value) = 'array'
      when 'date' then pg_catalog.jsonb_typeof(v_value) = 'string' and etl._is_iso_date(v_value #>> '{}')
      when 'timestamp' then pg_catalog.jsonb_typeof(v_value) = 'string' and etl._is_iso_timestamp(v_value #>> '{}')
    end;
    if not v_ok then
      raise exception 'parameter "%" of job "%" must be of type %, got %', p.name, v_slug, p.data_type, v_value
        using errcode = 'invalid_parameter_value';
    end if;
    if p.allowed_values is not null and not (p.allowed_values @> pg_catalog.jsonb_build_array(v_value)) then
      raise exception 'parameter "%" of job "%" must be one of %, got %', p.name, v_slug, p.allowed_values, v_value
        using errcode = 'invalid_parameter_value';
    end if;
  end loop;
  return v_out;
end;
$$;
comment on function etl._validate_params(bigint, jsonb, text) is
  'Checks parameters against the job''s schema for the mode (unknown keys, required keys, types, '
  'allowed values) and returns them with defaults filled in; raises 22023 naming the parameter.';
