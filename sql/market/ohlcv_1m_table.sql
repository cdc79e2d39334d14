-- ohlcv_1m's columns, created before the first run (the bar query reads the table's earlier partitions).
CREATE TABLE IF NOT EXISTS ohlcv_1m (
    ts TIMESTAMP,
    instrument_id INTEGER,
    exchange VARCHAR,
    symbol VARCHAR,
    open DOUBLE,
    high DOUBLE,
    low DOUBLE,
    close DOUBLE,
    volume DOUBLE,
    trade_count BIGINT,
    quote_volume DOUBLE,
    taker_buy_volume DOUBLE,
    source VARCHAR,
    is_filled BOOLEAN
)
