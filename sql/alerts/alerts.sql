-- alerts: one row per raised alert (deduplicated with a cooldown per rule and subject before insert).
CREATE TABLE IF NOT EXISTS alerts (
    alert_id VARCHAR PRIMARY KEY,
    ts TIMESTAMP NOT NULL,
    severity VARCHAR NOT NULL,
    rule VARCHAR NOT NULL,
    subject VARCHAR NOT NULL,
    value DOUBLE,
    threshold DOUBLE,
    message VARCHAR
)
