-- recent_alerts: the newest alerts, whatever raised them.
SELECT ts, severity, rule, subject, round(value, 4) AS value, threshold
FROM alerts
ORDER BY ts DESC
LIMIT $limit
