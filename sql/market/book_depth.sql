-- book_depth: per (exchange, symbol, minute, notional) depth and book-walk costs of [$start, $end), computed
-- in numpy (core.book_depth.book_depth_frame) from raw_order_book and registered as `book_depth_frame`.
SELECT
    CAST(exchange AS VARCHAR) AS exchange,
    CAST(symbol AS VARCHAR) AS symbol,
    CAST(ts AS TIMESTAMP) AS ts,
    CAST(notional_usd AS DOUBLE) AS notional_usd,
    CAST(snapshots AS BIGINT) AS snapshots,
    CAST(mid AS DOUBLE) AS mid,
    CAST(spread_bps AS DOUBLE) AS spread_bps,
    CAST(bid_depth_1bps_usd AS DOUBLE) AS bid_depth_1bps_usd,
    CAST(ask_depth_1bps_usd AS DOUBLE) AS ask_depth_1bps_usd,
    CAST(bid_depth_5bps_usd AS DOUBLE) AS bid_depth_5bps_usd,
    CAST(ask_depth_5bps_usd AS DOUBLE) AS ask_depth_5bps_usd,
    CAST(bid_depth_10bps_usd AS DOUBLE) AS bid_depth_10bps_usd,
    CAST(ask_depth_10bps_usd AS DOUBLE) AS ask_depth_10bps_usd,
    CAST(bid_depth_25bps_usd AS DOUBLE) AS bid_depth_25bps_usd,
    CAST(ask_depth_25bps_usd AS DOUBLE) AS ask_depth_25bps_usd,
    CAST(buy_cost_bps AS DOUBLE) AS buy_cost_bps,
    CAST(sell_cost_bps AS DOUBLE) AS sell_cost_bps,
    CAST(buy_filled_share AS DOUBLE) AS buy_filled_share,
    CAST(sell_filled_share AS DOUBLE) AS sell_filled_share
FROM book_depth_frame
WHERE ts >= $start AND ts < $end
