-- basis: perp vs spot per venue at 1m and 1h, from the frame the asset registered (quotes, else bar closes).
SELECT
    CAST(exchange AS VARCHAR) AS exchange,
    CAST(symbol AS VARCHAR) AS symbol,
    CAST(timeframe AS VARCHAR) AS timeframe,
    CAST(ts AS TIMESTAMP) AS ts,
    CAST(underlying AS VARCHAR) AS underlying,
    CAST(spot_symbol AS VARCHAR) AS spot_symbol,
    CAST(spot_bid AS DOUBLE) AS spot_bid,
    CAST(spot_ask AS DOUBLE) AS spot_ask,
    CAST(spot_mid AS DOUBLE) AS spot_mid,
    CAST(perp_bid AS DOUBLE) AS perp_bid,
    CAST(perp_ask AS DOUBLE) AS perp_ask,
    CAST(perp_mid AS DOUBLE) AS perp_mid,
    CAST(mark_price AS DOUBLE) AS mark_price,
    CAST(index_price AS DOUBLE) AS index_price,
    CAST(basis_bps AS DOUBLE) AS basis_bps,
    CAST(mark_index_bps AS DOUBLE) AS mark_index_bps,
    CAST(interval_h AS DOUBLE) AS interval_h,
    CAST(basis_apr AS DOUBLE) AS basis_apr,
    CAST(spot_half_spread_bps AS DOUBLE) AS spot_half_spread_bps,
    CAST(perp_half_spread_bps AS DOUBLE) AS perp_half_spread_bps,
    CAST(source AS VARCHAR) AS source
FROM basis_frame
WHERE ts >= $start AND ts < $end
