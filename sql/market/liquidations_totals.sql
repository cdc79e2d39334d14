-- liquidations' run metadata: each series' prints and long/short notional over the window.
SELECT exchange, symbol, sum(prints) AS prints, round(sum(long_notional), 2) AS long_notional,
    round(sum(short_notional), 2) AS short_notional
FROM liquidations
WHERE ts >= $start AND ts < $end
GROUP BY ALL
ORDER BY exchange, symbol
