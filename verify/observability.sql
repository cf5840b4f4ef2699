-- Verify etl:observability on pg

BEGIN;

SELECT channel_id, name, kind, config, enabled FROM etl.alert_channels WHERE false;
SELECT rule_id, name, rule_type, job_id, threshold, time_window, severity FROM etl.alert_rules WHERE false;
SELECT rule_id, channel_id FROM etl.alert_rule_channels WHERE false;
SELECT check_id, name, check_type, config, severity FROM etl.dq_checks WHERE false;
SELECT result_id, check_id, run_id, status, details FROM etl.dq_results WHERE false;
SELECT alert_event_id, rule_id, run_id, dedupe_key, status, occurrences, resolved_at FROM etl.alert_events WHERE false;
SELECT delivery_id, alert_event_id, channel_id, status, sent_at FROM etl.alert_deliveries WHERE false;
SELECT instance_id, service, version, host, pid, status, started_at, last_seen FROM etl.service_heartbeats WHERE false;
SELECT snapshot_id, captured_at, metric_name, value_type, value, labels FROM etl.metric_snapshots WHERE false;

ROLLBACK;
