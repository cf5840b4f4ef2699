-- Grants: deny by default, then the API per role. Internal (underscore) functions stay ungranted.

revoke all on all functions in schema etl from public;

grant select on all tables in schema etl to etl_viewer;
grant execute on function etl.cron_next(text, text, timestamptz), etl.cron_next_n(text, text, timestamptz, integer),
                          etl.cron_describe(text), etl.cron_parse(text), etl.canonical_json(jsonb),
                          etl.param_fingerprint(jsonb), etl.next_wakeup(), etl.next_lease_expiry(bigint[]),
                          etl.classify_error(bigint, text, text, text, integer, boolean),
                          etl.backoff_ms(bigint, integer)
  to etl_viewer;
grant execute on function
  etl.run_job(text, jsonb, boolean, text, boolean, uuid, text, jsonb, timestamptz, boolean),
  etl.trigger_pipeline(text[], text[], text, boolean, jsonb, boolean, text, text, text, text, jsonb, timestamptz, boolean),
  etl.approve(bigint, text, text),
  etl.cancel(bigint, text), etl.cancel_pipeline(bigint, text),
  etl.retry(bigint, text), etl.retry_pipeline(bigint, text), etl.set_job_enabled(text, boolean, text),
  etl.backfill(text, timestamptz, timestamptz, text, boolean, boolean, text)
  to etl_operator;
-- The runner's side of a run: outcomes come from runners, never from a person (an operator who
-- could call etl.finish could forge any run's result, metrics and cursor without an audit row).
grant execute on function
  etl.claim(text, integer), etl.heartbeat(bigint, bigint), etl.finish(bigint, bigint, jsonb),
  etl.finish_many(jsonb), etl.start_items(bigint, bigint, jsonb), etl.finish_item(bigint, bigint, bigint, jsonb),
  etl.refresh_plan(bigint, bigint, boolean), etl.refresh_view(bigint, bigint, bigint),
  etl.reap_expired_leases(text, bigint[])
  to etl_runner;
grant insert on etl.run_logs to etl_runner;
grant insert, update on etl.service_heartbeats to etl_runner;
-- Job definitions are the admin's: what etl apply writes (it serialises itself with an advisory lock).
grant insert, update, delete on etl.jobs, etl.job_dependencies, etl.job_tags, etl.job_parameters, etl.schedules,
  etl.refresh_targets, etl.job_refresh_targets, etl.job_groups, etl.job_group_members, etl.job_lineage
  to etl_admin;
grant execute on function etl.audit_definition_change(text, jsonb) to etl_admin;
grant execute on function etl.set_setting(text, jsonb, text), etl.tick() to etl_admin;
