-- trader_funding: funding the venue booked to the trader per market, against the model (funding_reconciliation);
-- pending: payments whose settled rate is not loaded yet (the venues' history comes once a day has ended).
SELECT exchange, symbol, count(*) AS settlements, round(sum(booked_usd), 4) AS booked_usd,
       round(sum(expected_usd) FILTER (WHERE status <> 'pending'), 4) AS model_usd,
       round(max(abs(difference_usd)) FILTER (WHERE status <> 'pending'), 6) AS largest_difference_usd,
       count(*) FILTER (WHERE status = 'mismatch') AS mismatches,
       count(*) FILTER (WHERE status = 'pending') AS pending
FROM funding_reconciliation
GROUP BY exchange, symbol
ORDER BY exchange, symbol
LIMIT $limit
