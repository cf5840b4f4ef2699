-- pgTAP: etl.canonical_json / etl.param_fingerprint against the shared vector
-- file (also checked on the Python side by tests/test_canonical.py).
-- Run from the repository root: pg_prove pgtap/canonical.sql
\set vectors `cat tests/vectors/param_fingerprint.json`

BEGIN;

CREATE TEMP TABLE canonical_vectors ON COMMIT DROP AS
SELECT c.ord,
       c.v ->> 'name'          AS name,
       c.v ->> 'input'         AS input,
       c.v ->> 'canonical'     AS canonical,
       c.v ->> 'sha256'        AS sha256,
       c.v ->> 'equivalent_to' AS equivalent_to
  FROM jsonb_array_elements(:'vectors'::jsonb -> 'cases') WITH ORDINALITY AS c(v, ord);

-- 2 assertions per vector case + 17 extra assertions.
SELECT plan((SELECT count(*)::int * 2 + 17 FROM canonical_vectors));

-- Per case: canonical text and fingerprint, byte for byte.
SELECT is(etl.canonical_json(input::jsonb), canonical, name || ': canonical text')
  FROM canonical_vectors ORDER BY ord;

SELECT is(etl.param_fingerprint(input::jsonb), sha256, name || ': sha256 fingerprint')
  FROM canonical_vectors ORDER BY ord;

-- Vector file sanity.
SELECT cmp_ok((SELECT count(*)::int FROM canonical_vectors), '>=', 40,
              'vector file has at least 40 cases');

SELECT is((SELECT count(*)::int FROM canonical_vectors
            WHERE canonical::jsonb IS DISTINCT FROM input::jsonb
               OR etl.canonical_json(canonical::jsonb) IS DISTINCT FROM canonical
               OR encode(sha256(convert_to(canonical, 'UTF8')), 'hex') IS DISTINCT FROM sha256),
          0,
          'canonical texts are equal as jsonb to their inputs, are fixed points, and hash to sha256');

SELECT is((SELECT count(*)::int FROM canonical_vectors a
             JOIN canonical_vectors b ON b.name = a.equivalent_to
            WHERE etl.param_fingerprint(a.input::jsonb) IS DISTINCT FROM etl.param_fingerprint(b.input::jsonb)),
          0,
          'cases marked equivalent_to give identical fingerprints');

-- NULL handling.
SELECT is(etl.canonical_json(NULL), NULL, 'canonical_json(NULL) is NULL (strict)');

SELECT is(etl.param_fingerprint(NULL), etl.param_fingerprint('{}'),
          'param_fingerprint(NULL) equals fingerprint of {}');

SELECT is(etl.param_fingerprint('null'::jsonb),
          '44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a',
          'param_fingerprint(JSON null) equals sha256 of "{}"');

SELECT throws_ok($$SELECT etl.param_fingerprint('[1,2]'::jsonb)$$, '22023', NULL,
                 'param_fingerprint rejects non-object parameters');

-- Key-order, whitespace and number-spelling independence.
SELECT is(etl.param_fingerprint('{"b":1,"a":{"d":[1,2],"c":null}}'),
          etl.param_fingerprint(E'{ "a" : { "c" : null , "d" : [ 1.0 , 2e0 ] } ,\n "b" : 10E-1 }'),
          'fingerprint is independent of key order, whitespace and number spelling');

SELECT isnt(etl.param_fingerprint('{"v":[1,2]}'), etl.param_fingerprint('{"v":[2,1]}'),
            'array order changes the fingerprint');

-- Top-level scalars and arrays (canonical_json accepts any jsonb).
SELECT is(etl.canonical_json('[1.50, -0, {"b":1,"aa":2}, "x\u00e9\n", true, null]'),
          E'[1.5,0,{"aa":2,"b":1},"x\u00e9\\n",true,null]',
          'canonical_json of a top-level array');

SELECT is(etl.canonical_json('1.5e-7') || ' ' || etl.canonical_json('"\u2028"') || ' ' || etl.canonical_json('false'),
          E'0.00000015 "\u2028" false',
          'canonical_json of top-level scalars');

-- Function properties.
SELECT is((SELECT provolatile::text FROM pg_proc WHERE oid = 'etl.canonical_json(jsonb)'::regprocedure),
          'i', 'canonical_json is immutable');

SELECT is((SELECT provolatile::text FROM pg_proc WHERE oid = 'etl.param_fingerprint(jsonb)'::regprocedure),
          'i', 'param_fingerprint is immutable');

SELECT is((SELECT count(*)::int FROM pg_proc
            WHERE oid IN ('etl.canonical_json(jsonb)'::regprocedure, 'etl.param_fingerprint(jsonb)'::regprocedure)
              AND proparallel = 's'),
          2, 'both functions are parallel safe');

SELECT is((SELECT count(*)::int FROM pg_proc
            WHERE oid IN ('etl.canonical_json(jsonb)'::regprocedure, 'etl.param_fingerprint(jsonb)'::regprocedure)
              AND proconfig @> ARRAY['search_path=""']),
          2, 'both functions pin search_path to empty');

SELECT is((SELECT array_agg(DISTINCT l.lanname::text) FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
            WHERE p.oid IN ('etl.canonical_json(jsonb)'::regprocedure, 'etl.param_fingerprint(jsonb)'::regprocedure)),
          ARRAY['plpgsql'], 'both functions are PL/pgSQL (no untrusted language needed)');

SELECT is((SELECT proisstrict FROM pg_proc WHERE oid = 'etl.param_fingerprint(jsonb)'::regprocedure),
          false, 'param_fingerprint is not strict (NULL means no parameters)');

SELECT * FROM finish();
ROLLBACK;
