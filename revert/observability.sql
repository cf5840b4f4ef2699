-- Revert etl:observability from pg

BEGIN;

DROP TABLE etl.metric_snapshots;
DROP TABLE etl.service_heartbeats;
DROP TABLE etl.alert_deliveries;
DROP TABLE etl.alert_events;
DROP TABLE etl.dq_results;
DROP TABLE etl.dq_checks;
DROP TABLE etl.alert_rule_channels;
DROP TABLE etl.alert_rules;
DROP TABLE etl.alert_channels;

COMMIT;
