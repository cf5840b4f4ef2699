-- 020_canonical.sql: canonical JSON text of job parameters and its SHA-256
-- fingerprint.
--
-- SQL twin of python_runner/canonical.py; both must agree byte for byte, which
-- is proven by the shared vector file tests/vectors/param_fingerprint.json
-- (pgtap/canonical.sql here, tests/test_canonical.py on the Python side).
--
-- Canonical form:
--   * Objects: members sorted by key in Unicode code point order (= UTF-8 byte
--     order = COLLATE "C"; this differs from RFC 8785's UTF-16 order only for
--     keys mixing astral characters with U+E000..U+FFFF). No whitespace at
--     all: {"a":1,"b":[true,null]}. Duplicate keys in JSON text: the last wins
--     (jsonb already keeps only the last one). NB: jsonb itself stores keys
--     sorted by length first ({"b":1,"aa":2} is output as {"b": 1, "aa": 2}),
--     so jsonb::text is NOT canonical.
--   * Arrays keep their element order.
--   * Strings (keys and values): only '"', '\' and control characters below
--     U+0020 are escaped; \b \f \n \r \t as short escapes, the other controls
--     as \u00XX with lowercase hex. Everything else (non-ASCII, U+007F,
--     U+2028, astral characters, combining marks) is emitted raw (UTF-8).
--     No Unicode normalisation. This is PostgreSQL's escape_json(), used by
--     to_json(text) and by jsonb output of strings (keys are escaped with
--     to_jsonb(key)::text, measurably faster than to_json(key)::text).
--   * Numbers are compared by exact value: 1, 1.0, 1e0, 10E-1 -> 1;
--     1.50 -> 1.5; -0 -> 0; 1e2 -> 100; 1.5e-7 -> 0.00000015. Plain decimal
--     notation, never an exponent, no trailing zeros after the point, no
--     trailing point. jsonb numbers are numeric, hence exact (large integers
--     and long decimals are kept as is): trim_scale(n)::text, with zero
--     mapped to '0' (numeric has no negative zero today; guarded anyway).
--   * null, true, false as usual.
--   * Fingerprint: lowercase hex SHA-256 of the UTF-8 bytes of the canonical
--     text of the parameter object. SQL NULL and JSON null parameters mean
--     "no parameters" and fingerprint like '{}'; any other non-object raises
--     invalid_parameter_value (22023).
--
-- Assumes a UTF8 database (COLLATE "C" orders by the bytes of the server
-- encoding; only in UTF8 is that code point order). The functions are declared
-- immutable although to_jsonb()/convert_to() are marked stable in general:
-- for text input and a fixed database encoding they are deterministic.
--
-- Builtins only (no untrusted languages): sha256() exists since PostgreSQL 11,
-- trim_scale() since 13.

create or replace function etl.canonical_json(p_value jsonb)
returns text
language plpgsql
immutable
strict
parallel safe
set search_path = ''
as $function$
declare
    v_type text := jsonb_typeof(p_value);
begin
    -- Scalars of object members / array elements are rendered inline below;
    -- only nested containers recurse, so a flat object costs a single call.
    -- Keys are ordered with COLLATE "C" (byte order of UTF-8 = code point
    -- order), never by jsonb's internal length-first order.
    if v_type = 'object' then
        return '{' || coalesce((
            select string_agg(
                       to_jsonb(e.key)::text || ':' ||
                       case jsonb_typeof(e.value)
                           when 'number' then
                               case when e.value::numeric = 0 then '0'
                                    else trim_scale(e.value::numeric)::text
                               end
                           when 'object' then etl.canonical_json(e.value)
                           when 'array' then etl.canonical_json(e.value)
                           else e.value::text  -- string, boolean, null
                       end,
                       ',' order by e.key collate "C")
              from jsonb_each(p_value) as e), '') || '}';
    elsif v_type = 'array' then
        return '[' || coalesce((
            select string_agg(
                       case jsonb_typeof(a.value)
                           when 'number' then
                               case when a.value::numeric = 0 then '0'
                                    else trim_scale(a.value::numeric)::text
                               end
                           when 'object' then etl.canonical_json(a.value)
                           when 'array' then etl.canonical_json(a.value)
                           else a.value::text
                       end,
                       ',' order by a.ord)
              from jsonb_array_elements(p_value) with ordinality as a(value, ord)), '') || ']';
    elsif v_type = 'number' then
        if p_value::numeric = 0 then
            return '0';
        end if;
        return trim_scale(p_value::numeric)::text;
    else
        -- string (escape_json), boolean, null
        return p_value::text;
    end if;
end;
$function$;

comment on function etl.canonical_json(jsonb) is
$$Canonical JSON text of a jsonb value (identical to python_runner.canonical.canonical_json). Rules: object keys sorted by Unicode code point (UTF-8 byte order, COLLATE "C"), no whitespace ({"a":1,"b":[true,null]}), duplicate keys: last wins; arrays keep their order; strings escape only '"', '\' and controls < U+0020 (\b \f \n \r \t, others \u00XX lowercase), everything else raw UTF-8 (U+007F, U+2028, non-ASCII, astral), no normalisation; numbers by exact value in plain decimal notation without exponent or trailing zeros (1.0, 1e0, 10E-1 -> 1; 1.50 -> 1.5; -0 -> 0; 1e2 -> 100; 1.5e-7 -> 0.00000015), arbitrary precision; null/true/false as usual. Strict: NULL in, NULL out.$$;

create or replace function etl.param_fingerprint(p_params jsonb)
returns text
language plpgsql
immutable
parallel safe
set search_path = ''
as $function$
begin
    if p_params is null or p_params = 'null'::jsonb then
        p_params := '{}'::jsonb;  -- no parameters
    elsif jsonb_typeof(p_params) <> 'object' then
        raise exception 'job parameters must be a JSON object, got %', jsonb_typeof(p_params)
            using errcode = 'invalid_parameter_value';
    end if;
    return encode(sha256(convert_to(etl.canonical_json(p_params), 'UTF8')), 'hex');
end;
$function$;

comment on function etl.param_fingerprint(jsonb) is
$$Fingerprint of job parameters: lowercase hex SHA-256 of the UTF-8 bytes of etl.canonical_json(p_params) (identical to python_runner.canonical.param_fingerprint). SQL NULL and JSON null mean no parameters and give the fingerprint of '{}' (44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a); any other non-object raises 22023. Canonical rules: keys sorted by code point (COLLATE "C"), no whitespace, arrays in order, strings escape only '"', '\' and controls < U+0020 (short escapes or \u00XX lowercase) and are otherwise raw UTF-8, numbers by exact value in plain decimal without exponent or trailing zeros (1.0 = 1e0 = 1, -0 = 0), null/true/false as usual.$$;
