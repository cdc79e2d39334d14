-- risk_breaches: the limit breaches of the latest risk report.
SELECT name, subject, round(value, 4) AS value, threshold, severity
FROM risk_report
WHERE section = 'breach'
  AND report_id = (SELECT report_id FROM risk_report ORDER BY created_at DESC LIMIT 1)
ORDER BY severity, name
