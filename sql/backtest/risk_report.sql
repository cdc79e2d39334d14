-- risk_report: the book's figures and limit breaches for one report; key report_id, section, name, subject.
SELECT
    CAST(report_id AS VARCHAR) AS report_id,
    CAST(ts AS TIMESTAMP) AS ts,
    CAST(created_at AS TIMESTAMP) AS created_at,
    CAST(source_run_id AS VARCHAR) AS source_run_id,
    CAST(section AS VARCHAR) AS section,
    CAST(name AS VARCHAR) AS name,
    CAST(subject AS VARCHAR) AS subject,
    CAST(value AS DOUBLE) AS value,
    CAST(threshold AS DOUBLE) AS threshold,
    CAST(severity AS VARCHAR) AS severity,
    CAST(message AS VARCHAR) AS message
FROM report_frame
