-- open_interest's run metadata: each series' last hour of the window, its open interest and change.
SELECT exchange, symbol, strftime(ts, '%Y-%m-%d %H:00') AS hour, samples,
    round(oi_amount, 4) AS oi_amount, round(oi_value, 2) AS oi_value, round(oi_amount_change_pct, 3) AS change_pct
FROM open_interest
WHERE ts >= $start AND ts < $end
QUALIFY row_number() OVER (PARTITION BY exchange, symbol ORDER BY ts DESC) = 1
ORDER BY exchange, symbol
