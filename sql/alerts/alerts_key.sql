-- alerts_key: a second alert with a stored alert_id fails instead of landing (DuckDB file; a lake has no indexes).
CREATE UNIQUE INDEX IF NOT EXISTS alerts_alert_id ON alerts (alert_id)
