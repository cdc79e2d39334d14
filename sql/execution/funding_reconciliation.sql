-- funding_reconciliation: funding the model expects against what the venue booked, of [$start, $end) by
-- settlement (core/execution/funding_reconciliation.py computes it into the registered frame).
SELECT
    CAST(exchange AS VARCHAR) AS exchange,
    CAST(symbol AS VARCHAR) AS symbol,
    CAST(funding_ts AS TIMESTAMP) AS funding_ts,
    CAST(funding_ts_ms AS BIGINT) AS funding_ts_ms,
    CAST(booked_ts_ms AS BIGINT) AS booked_ts_ms,
    CAST(units AS DOUBLE) AS units,
    CAST(funding_rate AS DOUBLE) AS funding_rate,
    CAST(interval_h AS DOUBLE) AS interval_h,
    CAST(ref_price AS DOUBLE) AS ref_price,
    CAST(expected_usd AS DOUBLE) AS expected_usd,
    CAST(booked_usd AS DOUBLE) AS booked_usd,
    CAST(difference_usd AS DOUBLE) AS difference_usd,
    CAST(implied_price AS DOUBLE) AS implied_price,
    CAST(status AS VARCHAR) AS status,
    CAST(explanation AS VARCHAR) AS explanation
FROM reconciliation_frame
WHERE funding_ts >= $start AND funding_ts < $end
