"""core.sql and the SQL files themselves: loading by name, parameter binding, idempotent windows, and the
market SQL run directly on DuckDB against plain-Python expectations (edge cases the fixtures lack)."""

from __future__ import annotations

from datetime import datetime

import duckdb
import pytest

from fundarb_dagster.core import sql
from fundarb_dagster.core.window import window_from_ms

MINUTE = 60_000
HOUR = 3_600_000
T0 = 1_762_000_000_000 // HOUR * HOUR


def test_every_sql_file_loads_by_name_and_declares_only_bindable_parameters():
    files = sorted(sql.SQL_ROOT.glob("*/*.sql"))
    assert any(p.parent.name == "raw" for p in files) and any(p.parent.name == "market" for p in files)
    for path in files:
        text = sql.load_sql(path.parent.name, path.stem)
        assert text.strip(), path
        for name in sql.parameters_of(text):
            assert name.isidentifier(), (path, name)


def test_missing_file_and_missing_parameter_errors_name_them():
    with pytest.raises(FileNotFoundError, match="nope"):
        sql.load_sql("market", "nope")
    with pytest.raises(KeyError, match="end"):
        sql.bind("SELECT $start, $end", {"start": 1})
    assert sql.bind("SELECT $start -- $ignored in a comment", {"start": 1, "extra": 2}) == {"start": 1}
    with pytest.raises(ValueError, match="identifier"):
        sql.check_identifier("ohlcv; DROP TABLE x")


def test_replace_window_is_idempotent_and_touches_only_its_window():
    conn = duckdb.connect()
    conn.execute("CREATE TABLE src AS SELECT make_timestamp(i * 1000000) AS ts, i AS v FROM range(10) t(i)")
    select = "SELECT ts, v FROM src WHERE ts >= $start AND ts < $end"
    all_params = {"start": datetime(1970, 1, 1), "end": datetime(1970, 1, 1, 0, 0, 10)}
    assert sql.replace_window(conn, "dst", select, all_params) == 10
    conn.execute("UPDATE src SET v = v * 100")
    window = {"start": datetime(1970, 1, 1, 0, 0, 3), "end": datetime(1970, 1, 1, 0, 0, 5)}
    assert sql.replace_window(conn, "dst", select, window) == 2
    assert sql.replace_window(conn, "dst", select, window) == 2
    got = [v for (v,) in conn.execute("SELECT v FROM dst ORDER BY ts").fetchall()]
    assert got == [0, 1, 2, 300, 400, 5, 6, 7, 8, 9]


def test_a_failing_select_leaves_the_table_untouched():
    conn = duckdb.connect()
    conn.execute("CREATE TABLE dst AS SELECT TIMESTAMP '2020-01-01' AS ts, 1 AS v")
    with pytest.raises(duckdb.Error):
        sql.replace_window(conn, "dst", "SELECT ts, v / 0 AS v FROM nosuchtable", {"start": 0, "end": 1})
    assert conn.execute("SELECT count(*) FROM dst").fetchone()[0] == 1


def test_unstaged_replace_window_gives_the_same_rows_and_rolls_back_a_failing_insert():
    """staged=False (one write, for selects that do not read the target) equals the staged path, and an insert
    that fails after the delete leaves the window as it was."""
    conn = duckdb.connect()
    conn.execute("CREATE TABLE src AS SELECT make_timestamp(i * 1000000) AS ts, i AS v FROM range(10) t(i)")
    select = "SELECT ts, v FROM src WHERE ts >= $start AND ts < $end"
    all_params = {"start": datetime(1970, 1, 1), "end": datetime(1970, 1, 1, 0, 0, 10)}
    assert sql.replace_window(conn, "staged", select, all_params) == 10
    assert sql.replace_window(conn, "direct", select, all_params, staged=False) == 10
    window = {"start": datetime(1970, 1, 1, 0, 0, 3), "end": datetime(1970, 1, 1, 0, 0, 5)}
    conn.execute("UPDATE src SET v = v * 100")
    for name, staged in (("staged", True), ("direct", False)):
        assert sql.replace_window(conn, name, select, window, staged=staged) == 2
        assert sql.replace_window(conn, name, select, window, staged=staged) == 2
    assert conn.execute("SELECT * FROM staged EXCEPT SELECT * FROM direct").fetchall() == []
    assert conn.execute("SELECT count(*) FROM direct").fetchone()[0] == 10
    failing = (
        "SELECT ts, CASE WHEN v > 300 THEN error('boom') ELSE v END AS v FROM src WHERE ts >= $start AND ts < $end"
    )
    with pytest.raises(duckdb.Error, match="boom"):
        sql.replace_window(conn, "direct", failing, window, staged=False)
    assert [v for (v,) in conn.execute("SELECT v FROM direct ORDER BY ts").fetchall()] == [
        0,
        1,
        2,
        300,
        400,
        5,
        6,
        7,
        8,
        9,
    ]


def _market_conn(trades: list[tuple[int, int, float, float]]) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect()
    conn.execute(
        "CREATE TABLE raw_trades AS SELECT make_timestamp(ts_ms * 1000) AS ts, ts_ms, 7 AS instrument_id, "
        "'x' AS exchange, "
        "'X/Y' AS symbol, 1::TINYINT AS side, trade_id, price, amount, 'NaN'::DOUBLE AS cost "
        "FROM (SELECT unnest($rows, recursive := true))",
        {"rows": [{"ts_ms": t, "trade_id": i, "price": p, "amount": a} for t, i, p, a in trades]},
    )
    conn.execute(
        "CREATE TABLE raw_ohlcv (ts TIMESTAMP, ts_ms BIGINT, instrument_id INT, exchange VARCHAR, symbol VARCHAR, "
        "timeframe_s INT, "
        "open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE, quote_volume DOUBLE, trade_count DOUBLE, "
        "taker_buy_volume DOUBLE)"
    )
    conn.execute(sql.load_sql("market", "ohlcv_1m_table"))
    return conn


def _bars(
    conn: duckdb.DuckDBPyConnection, start_ms: int, end_ms: int, now_ms: int | None = None, from_raw: bool = False
) -> list[tuple]:
    """ohlcv_1m of [start, end): the close carried into it from the table's earlier rows, or `from_raw` (as a
    history run does) from the raw tables' bars of the horizon before it."""
    params = window_from_ms(start_ms, end_ms).params(
        horizon_ms=1440 * MINUTE,
        now_ms=now_ms or end_ms + HOUR,
        bars_from_ms=start_ms - 1440 * MINUTE if from_raw else start_ms,
    )
    sql.replace_window(conn, "ohlcv_1m", sql.load_sql("market", "ohlcv_1m"), params)
    return conn.execute(
        "SELECT epoch_ms(ts), open, high, low, close, volume, source FROM ohlcv_1m ORDER BY ts"
    ).fetchall()


def test_a_trade_one_millisecond_before_the_minute_stays_in_its_minute():
    """The TIMESTAMP_NS bucketing bite: integer ms buckets never push 59.999 s into the next minute."""
    conn = _market_conn([(T0 + MINUTE - 1, 1, 10.0, 1.0), (T0 + MINUTE, 2, 11.0, 1.0)])
    bars = _bars(conn, T0, T0 + 2 * MINUTE)
    assert bars == [(T0, 10.0, 10.0, 10.0, 10.0, 1.0, "trades"), (T0 + MINUTE, 11.0, 11.0, 11.0, 11.0, 1.0, "trades")]


def test_equal_timestamps_keep_trade_id_order_for_open_and_close():
    conn = _market_conn([(T0 + 5, 7, 3.0, 1.0), (T0 + 5, 6, 2.0, 1.0), (T0 + 5, 8, 4.0, 1.0)])
    (bar,) = _bars(conn, T0, T0 + MINUTE)
    assert bar[1:5] == (2.0, 4.0, 2.0, 4.0)


def test_the_hour_in_progress_is_not_padded_past_now():
    conn = _market_conn([(T0 + 10, 1, 5.0, 1.0)])
    bars = _bars(conn, T0, T0 + HOUR, now_ms=T0 + 10 * MINUTE + 30_000)
    assert [b[0] for b in bars] == [T0 + i * MINUTE for i in range(10)]
    assert [b[6] for b in bars] == ["trades"] + ["filled"] * 9


def test_next_partition_starts_from_the_previous_close():
    conn = _market_conn([(T0 + 10, 1, 5.0, 1.0), (T0 + HOUR + 30 * MINUTE, 2, 6.0, 2.0)])
    _bars(conn, T0, T0 + HOUR)
    bars = _bars(conn, T0 + HOUR, T0 + 2 * HOUR)
    second = [b for b in bars if b[0] >= T0 + HOUR]
    assert len(second) == 60
    assert second[0] == (T0 + HOUR, 5.0, 5.0, 5.0, 5.0, 0.0, "filled")
    assert second[30] == (T0 + HOUR + 30 * MINUTE, 6.0, 6.0, 6.0, 6.0, 2.0, "trades")
    assert second[59][4] == 6.0


@pytest.mark.parametrize("before", ["loaded", "not loaded", "loaded with other rows"])
def test_a_history_window_takes_the_previous_close_from_the_raw_bars_whatever_the_table_holds(before):
    """A history run (`from_raw`) carries the close of the raw tables' last bar before its window into its first
    minutes, whether the hours before were loaded into the table, not loaded, or loaded from other data: the same
    rows as the hourly path after the hours before loaded in order."""
    trades = [(T0 + 10, 1, 5.0, 1.0), (T0 + 20 * MINUTE, 2, 5.5, 1.0), (T0 + HOUR + 30 * MINUTE, 3, 6.0, 2.0)]
    conn = _market_conn(trades)
    in_order = [b for b in (_bars(conn, T0, T0 + HOUR), _bars(conn, T0 + HOUR, T0 + 2 * HOUR))[1] if b[0] >= T0 + HOUR]
    conn = _market_conn(trades)
    if before != "not loaded":
        _bars(conn, T0, T0 + HOUR)
    if before == "loaded with other rows":
        conn.execute("UPDATE ohlcv_1m SET close = 99.0")
    got = [b for b in _bars(conn, T0 + HOUR, T0 + 2 * HOUR, from_raw=True) if b[0] >= T0 + HOUR]
    assert got == in_order and len(got) == 60
    assert got[0] == (T0 + HOUR, 5.5, 5.5, 5.5, 5.5, 0.0, "filled")


# Every settlement time known: what settlement_times.sql read before it left out the keys whose inference counts for
# nothing (the obvious query the spans are held equal against).
EVERY_SETTLEMENT = """
SELECT DISTINCT exchange, symbol, funding_ts_ms FROM raw_funding WHERE is_settled = 1
UNION
SELECT DISTINCT exchange, symbol, funding_ts_ms FROM funding_history
"""


def test_settlement_times_leave_out_only_what_the_interval_spans_do_not_use():
    """funding_intervals' spans from settlement_times.sql equal those from every settlement, on keys reported from
    their first settlement (imported archives: one row read, their last), keys with settlements before their first
    report (backfilled history: read whole), a key never reported (1h, a missed and an off-grid settlement), a key
    whose first reports are NaN intervals, a key of two settlements, and market intervals placed after each key's
    last settlement."""
    import numpy as np
    import pandas as pd

    from fundarb_dagster.core import funding as f

    rows = []  # exchange, symbol, funding_ts_ms, is_settled, interval_h
    rows += [("a", "A", T0 + i * 8 * HOUR + 7, 1, 8.0) for i in range(30)]
    rows += [("a", "A", T0 + 240 * HOUR + i * 4 * HOUR, 1, 4.0) for i in range(20)]  # a reported switch to 4h
    rows += [("a", "A", T0 + 320 * HOUR + 3 * MINUTE, 0, 4.0)]  # a prediction
    rows += [("b", "B", T0 + i * 8 * HOUR, 1, np.nan) for i in range(30)]  # before its first report
    rows += [("b", "B", T0 + (30 + i) * 8 * HOUR, 1, 8.0) for i in range(10)]
    c = [T0 + h * HOUR for h in range(60) if h != 20] + [T0 + 30 * HOUR + 17 * MINUTE]
    rows += [("c", "C", t, 1, np.nan) for t in c]  # never reported
    rows += [("d", "D", T0 + i * 4 * HOUR, 1, np.nan if i < 5 else 4.0) for i in range(15)]
    rows += [("d", "D", T0 - 4 * HOUR, 0, np.nan)]  # an unsettled NaN report before every settlement
    rows += [("e", "E", T0 + i * 2 * HOUR, 1, np.nan) for i in range(2)]
    conn = duckdb.connect()
    conn.execute(
        "CREATE TABLE raw_funding AS SELECT * FROM (SELECT unnest($rows, recursive := true))",
        {
            "rows": [
                dict(zip(("exchange", "symbol", "funding_ts_ms", "is_settled", "interval_h"), r, strict=True))
                for r in rows
            ]
        },
    )
    conn.execute(
        "CREATE TABLE funding_history AS SELECT 'b' AS exchange, 'B' AS symbol, "
        f"{T0 - 8 * HOUR}::BIGINT AS funding_ts_ms, 'NaN'::DOUBLE AS interval_h"
    )
    reported = conn.execute(sql.load_sql("funding", "interval_observations")).df()
    market = pd.DataFrame(
        [f.observation(x, x.upper(), 0, 8.0, 0.03, -0.03, source="market") for x in "ace"],
        columns=f.OBSERVATION_COLUMNS,
    )
    read = conn.execute(sql.load_sql("funding", "settlement_times")).df()
    every = conn.execute(EVERY_SETTLEMENT).df()
    assert sorted(read.exchange.unique()) == list("abcde") and len(read[read.exchange == "a"]) == 1 < len(read)
    for market_info in (pd.DataFrame(), market):
        got = f.interval_spans(reported, read, pd.DataFrame(), market_info)
        want = f.interval_spans(reported, every, pd.DataFrame(), market_info)
        assert set(want.source) >= {"reported", "inferred"}
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True), check_dtype=False)
