-- alert_deliveries: one row per alert and channel: the outcome after retries (error NULL when delivered).
CREATE TABLE IF NOT EXISTS alert_deliveries (
    alert_id VARCHAR NOT NULL,
    channel VARCHAR NOT NULL,
    ts TIMESTAMP NOT NULL,
    ok BOOLEAN NOT NULL,
    attempts INTEGER NOT NULL,
    error VARCHAR
)
