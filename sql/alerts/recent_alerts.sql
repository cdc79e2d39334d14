-- The newest alerts in the table, whatever raised them (the alerts asset's page lists them).
SELECT ts, severity, rule, subject, value, threshold, message
FROM alerts
ORDER BY ts DESC, severity, rule, subject
LIMIT $limit
