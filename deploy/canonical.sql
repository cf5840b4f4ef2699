-- Deploy etl:canonical to pg
-- requires: schema
-- Canonical JSON of parameters and its SHA-256 fingerprint; python_runner/canonical.py computes
-- the same bytes (tests/vectors/param_fingerprint.json proves it).

BEGIN;

\ir ../plpgsql/020_canonical.sql

COMMIT;
