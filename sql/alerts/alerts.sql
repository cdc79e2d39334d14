-- alerts: one row per raised alert (deduplicated with a cooldown per rule and subject before insert).
-- alert_id is unique: alerts_key.sql in a DuckDB file; a DuckLake has no keys or indexes (core/alerts/delivery.py).
CREATE TABLE IF NOT EXISTS alerts (
    alert_id VARCHAR NOT NULL,
    ts TIMESTAMP NOT NULL,
    severity VARCHAR NOT NULL,
    rule VARCHAR NOT NULL,
    subject VARCHAR NOT NULL,
    value DOUBLE,
    threshold DOUBLE,
    message VARCHAR
)
