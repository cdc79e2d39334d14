-- trader_fills: every fill of the trader before $end (positions are sums of fills since the first).
SELECT ts, ts_ms, exchange, symbol, side, amount, price, ref_mid, fee_usd, pair, leg
FROM fills
WHERE ts < $end
ORDER BY ts_ms, trade_id
