-- risk_book_settlements: funding settled in ($start, $end] for the current book's historical simulation.
SELECT exchange, symbol, funding_ts, funding_rate
FROM funding_rates
WHERE funding_ts > $start AND funding_ts <= $end AND funding_rate IS NOT NULL
