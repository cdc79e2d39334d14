"""The capture job for real: mpiexec, watcher and flusher ranks, the simulator, Parquet in the landing zone."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from fundarb_dagster.core import landing, schema
from fundarb_dagster.core.config import load_config
from fundarb_dagster.core.schema import EventKind, StreamCode
from fundarb_dagster.core.sources.sim import SimExchange
from mpi_jobs.launcher import launch_capture

from .conftest import (
    REPO,
    assert_no_temporaries_or_unreadable_files,
    assert_trades_match_the_sim,
    job_command,
    landed,
    landed_so_far,
    run_job,
    run_until,
    source_counts,
    start_job,
    summed,
    wait_for_files,
    write_config,
)

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("ranks", [2, 3])
def test_sim_capture_lands_exactly_what_the_sim_emitted(tmp_path: Path, ranks: int) -> None:
    config = write_config(tmp_path)
    proc = run_job(config, ranks, duration=3)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = tmp_path / "data"
    assert len(source_counts(proc.stdout)) == ranks - 1  # one report per watcher
    counts = assert_trades_match_the_sim(config, data, proc.stdout)
    assert sum(counts.values()) > 500
    assert not list((data / "landing").rglob(f"{landing.TMP_PREFIX}*"))
    assert_no_temporaries_or_unreadable_files(data)
    # Closed candles equal the sim's history; funding rows landed for the perps.
    ohlcv = landed(data, "ohlcv")
    assert len(ohlcv) and (ohlcv["timeframe_s"] == 60).all()
    assert set(landed(data, "funding")["symbol"]) == {"BTC/USDT:USDT", "ETH/USDT:USDT"}
    # capture_stats: the final sample's message counts are what the rings carried.
    stats = landed(data, "capture_stats")
    last = stats.groupby(["rank", "stream"])["messages"].max().reset_index()
    trades_total = int(last.loc[last["stream"] == int(StreamCode.TRADES), "messages"].sum())
    assert trades_total == len(landed(data, "trades"))
    assert set(last["rank"]) == set(range(1, ranks))
    # On the data's own clock (the simulator's), so the stats sit in the hours of the data they describe.
    received = pd.concat([landed(data, s)["recv_ts_ms"] for s in ("trades", "tickers", "ohlcv", "funding")])
    assert stats["ts_ms"].between(received.min(), received.max()).all()
    assert "TOTAL" in proc.stdout and "trades" in proc.stdout


def test_sigterm_mid_run_drains_and_lands_every_emitted_record(tmp_path: Path) -> None:
    config = write_config(tmp_path, capture={"flush_interval_s": 5.0})  # most data still in memory at the signal
    proc = start_job(config, ranks=3)
    try:
        wait_for_files(tmp_path / "data", "capture_stats", timeout=60)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)  # to mpiexec, which forwards it to every rank
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, stderr[-3000:]
    assert "stopped by SIGTERM" in stdout
    assert_trades_match_the_sim(config, tmp_path / "data", stdout)


FAULT_EVENTS = {
    "disconnect": EventKind.RECONNECT,
    "malformed": EventKind.QUARANTINED,
    "duplicate": EventKind.DUPLICATE,
    "out_of_order": EventKind.OUT_OF_ORDER,
}
# binance streams funding as mark prices, okx as funding-rate structures; bybit's spot market has no funding.
# (Not bybit's perp: its tickers carry its funding, and the simulator hands each ticker message to one of the
# two callers of watch_ticker, so a duplicate can reach either subscription.)
FAULTED = [
    {"id": "binance", "symbols": ["ETH/USDT:USDT"]},
    {"id": "okx", "symbols": ["BTC/USDT:USDT"]},
    {"id": "bybit", "symbols": ["BTC/USDT"], "streams": ["trades", "tickers", "ohlcv"]},
]


def test_every_injected_fault_is_one_capture_event_of_its_kind_and_the_job_keeps_running(tmp_path: Path) -> None:
    """Finding 6: per stream and symbol, RECONNECT = disconnects, QUARANTINED = malformed messages, DUPLICATE =
    duplicates, OUT_OF_ORDER = out-of-order messages, exactly, as the simulator counted what it sent."""
    faults = {"disconnect_every_s": 300, "malformed_rate": 0.01, "duplicate_rate": 0.01, "out_of_order_rate": 0.01}
    config = write_config(tmp_path, sim={"seed": 11, "faults": faults}, exchanges=FAULTED)
    proc = run_job(config, 3, duration=5)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = tmp_path / "data"
    injected = summed(source_counts(proc.stdout), "faults_injected")
    events = landed(data, "capture_events")
    counted = events.groupby(["kind", "stream", "symbol"])["count"].sum().to_dict()
    subscriptions = load_config(config).subscriptions()
    mismatches = []
    for fault, kind in FAULT_EVENTS.items():
        for _, symbol, stream in subscriptions:
            expected = injected.get(f"{fault}|{stream}|{symbol}", 0)
            got = counted.get((int(kind), int(schema.STREAM_CODES[stream]), symbol), 0)
            if got != expected:
                mismatches.append((fault, stream, symbol, expected, got))
    assert not mismatches, "(fault, stream, symbol, injected, counted):\n" + "\n".join(map(str, mismatches))
    for fault in FAULT_EVENTS:
        assert sum(v for k, v in injected.items() if k.startswith(f"{fault}|")) > 0, fault
    # Nothing else was reported as a fault: no unexpected quarantine, duplicate or reconnect.
    assert set(events["kind"]) <= {int(k) for k in FAULT_EVENTS.values()} | {
        int(EventKind.GAP),
        int(EventKind.GAP_FILLED),
        int(EventKind.CHANNEL),  # not a fault: each subscription names the call that feeds it
    }
    # Despite the faults: every landed trade is a real one, once, and gaps were backfilled to the exact history.
    # (okx's landed amounts are base units, the sim's trades count contracts: compared on the other venues)
    pairs = [(e["id"], s) for e in FAULTED for s in e["symbols"] if e["id"] != "okx"]
    assert_trades_match_the_sim(config, data, proc.stdout, pairs=pairs)
    stats = landed(data, "capture_stats")
    assert int(stats["reconnects"].max()) > 0


def _stale_windows(config: Path, exchange_id: str, symbol: str, stream: str, lo: int, hi: int) -> list[int]:
    """Start times (market ms) of the simulator's silent windows of one subscription that begin in [lo, hi)."""
    sim_config = load_config(config).sim
    exchange = SimExchange(exchange_id, sim_config)
    market = asyncio.run(exchange._market(symbol))
    schedule = exchange.fault_plan.stale(stream, market)
    assert schedule is not None
    every, offset, _ = schedule
    first = (lo - offset) // every
    return [w for k in range(first, first + (hi - lo) // every + 2) if lo <= (w := offset + k * every) < hi]


def test_every_stale_window_longer_than_the_watchdog_is_one_stale_event(tmp_path: Path) -> None:
    """Finding 6: each silent window the simulator injects that outlasts the watchdog is one STALE event,
    whatever the number of restarts inside it; nothing else is reported stale."""
    speed, duration_s, window_s = 600, 8, 900
    timeouts = {"trades": 60, "tickers": 60, "funding": 60, "ohlcv": 120}
    config = write_config(
        tmp_path,
        sim={"seed": 5, "speed": speed, "faults": {"stale_every_s": 600, "stale_duration_s": window_s}},
        capture={"stale_timeout_s": timeouts},
        exchanges=FAULTED,
    )
    proc = run_job(config, 3, duration=duration_s)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = landed(tmp_path / "data", "capture_events")
    stale = events[events["kind"] == int(EventKind.STALE)]
    start = load_config(config).sim.start_ms  # the market time at the job's clock start
    stop = start + duration_s * speed * 1000
    # The watchdog fires after max(timeout, 0.5 s of wall time) of silence; `margin` covers the machine's lag.
    margin = 300_000
    detected, ambiguous = 0, 0
    for exchange_id, symbol, stream in load_config(config).subscriptions():
        threshold = max(timeouts[stream] * 1000, 500 * speed)
        # A subscription starts when its first call returns (the sim builds its funding world first).
        rows = landed(tmp_path / "data", stream)
        begun = int(rows.loc[(rows["exchange"] == exchange_id) & (rows["symbol"] == symbol), "recv_ts_ms"].min())
        mine = stale[(stale["symbol"] == symbol) & (stale["stream"] == int(schema.STREAM_CODES[stream]))]
        # (the feeds run on while the job stops, up to the watchers' stop bound: windows up to then count)
        windows = _stale_windows(config, exchange_id, symbol, stream, start - window_s * 1000, stop + 10 * speed * 1000)
        claimed = 0
        for w in windows:
            inside = mine[(mine["end_ms"] >= w) & (mine["end_ms"] <= w + window_s * 1000 + margin)]
            claimed += len(inside)
            if begun + margin <= w and w + threshold + margin <= stop:
                assert len(inside) == 1, (exchange_id, symbol, stream, w, inside[["start_ms", "end_ms"]].values)
                detected += 1
            else:  # began before the capture, or not yet outlasted the watchdog when it stopped
                assert len(inside) <= 1
                ambiguous += 1
        assert claimed == len(mine), (exchange_id, symbol, stream)  # no STALE event outside a silent window
    print(f"stale windows: {detected} detected exactly once, {ambiguous} at the run's edges")
    assert detected >= 10


def test_launcher_refuses_a_bad_config_naming_field_and_value_before_starting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, capture={"flush_interval_s": -1})
    assert launch_capture(str(config)) == 2
    err = capsys.readouterr().err
    assert "capture.flush_interval_s" in err and "-1" in err
    assert not (tmp_path / "data").exists()  # nothing started, nothing written
    good = write_config(tmp_path, name="good.yaml")
    assert launch_capture(str(good), ranks=1) == 2
    assert "ranks: 1" in capsys.readouterr().err


def test_launcher_runs_the_job_streams_its_output_and_returns_its_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    other = tmp_path / "elsewhere"
    code = launch_capture(str(config), ranks=2, duration_s=2, data_dir=str(other))
    out = capsys.readouterr().out
    assert code == 0
    assert "[capture" in out and "TOTAL" in out
    assert len(landed(other, "trades")) > 0  # the --data-dir override reached the job
    assert not (tmp_path / "data").exists()


def test_unknown_symbol_stops_the_job_with_a_config_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, exchanges=[{"id": "bybit", "symbols": ["NOPE/USDT"]}])
    proc = run_job(config, 2, duration=2)
    assert proc.returncode == 2
    assert "NOPE/USDT" in proc.stderr and "exchanges[0].symbols" in proc.stderr


def test_job_command_is_what_the_launcher_runs() -> None:
    cmd = job_command(Path("c.yaml"), 3)
    assert cmd[1:3] == ["-n", "3"] and cmd[-2:] == ["--config", "c.yaml"]


def test_launcher_forwards_ctrl_c_to_the_job_which_drains_and_exits_cleanly(tmp_path: Path) -> None:
    config = write_config(tmp_path, capture={"flush_interval_s": 5.0})
    code = f"import sys; from mpi_jobs.launcher import launch_capture; sys.exit(launch_capture({str(config)!r}))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for_files(tmp_path / "data", "capture_stats", timeout=60)
        proc.send_signal(signal.SIGINT)  # what ^C delivers to the launcher
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, stderr[-3000:]
    assert "stopped by SIGINT" in stdout
    assert_trades_match_the_sim(config, tmp_path / "data", stdout)


def test_sim_order_books_land_sampled_as_the_simulator_serves_them(tmp_path: Path) -> None:
    """The order_book stream through mpiexec, the ring and the flusher: one book per 5 s of the sim's clock,
    the top 20 levels, equal to the book a fresh simulator of the same seed serves at that time (okx swap:
    contracts converted to base units)."""
    config = write_config(
        tmp_path,
        exchanges=[{"id": "okx", "symbols": ["BTC/USDT:USDT", "ETH/USDT"], "streams": ["order_book"]}],
        capture={"flush_interval_s": 0.5, "stats_interval_s": 1.0, "book_interval_s": 5.0, "book_levels": 20},
    )

    def enough(data: Path) -> bool:
        books = landed_so_far(data, "order_book", ["symbol"])["symbol"].value_counts()
        return len(books) == 2 and books.min() >= 10

    proc = run_until(config, 2, enough)
    assert proc.returncode == 0, proc.stderr[-3000:]
    books = landed(tmp_path / "data", "order_book")
    assert books is not None and set(books["symbol"]) == {"BTC/USDT:USDT", "ETH/USDT"}
    sim = SimExchange("okx", load_config(config).sim)
    asyncio.run(sim.load_markets())
    for symbol, rows in books.groupby("symbol"):
        times = rows["ts_ms"].sort_values().tolist()
        assert len(times) >= 10 and len({t // 5_000 for t in times}) == len(times), symbol  # one per 5 s
        size = sim.markets[symbol]["contractSize"] or 1.0
        for row in rows.head(5).itertuples():
            book = sim.book.structure(sim._m[symbol], int(row.ts_ms), 20)  # noqa: SLF001 - the served book
            assert int(row.nonce) == book["nonce"] and int(row.updates) >= 1
            assert list(row.bid_price) == [p for p, _ in book["bids"]]
            assert list(row.ask_size) == pytest.approx([a * size for _, a in book["asks"]], rel=1e-12)


def test_sim_books_are_repaired_after_a_broken_sequence_and_polled_where_no_book_is_streamed(tmp_path: Path) -> None:
    """Through mpiexec, the ring and the flusher: okx's streamed book breaks its sequence every 60 market s and
    each break lands one REST snapshot (`from_rest` = 1) closing a GAP `sequence`; bybit streams no book, so with
    `capture.order_book_rest_interval_s: 30` its books are REST polls. Every landed book is the one a fresh
    simulator of the same seed serves at its time."""
    config = write_config(
        tmp_path,
        exchanges=[
            {"id": "okx", "symbols": ["BTC/USDT:USDT"], "streams": ["order_book"]},
            {"id": "bybit", "symbols": ["ETH/USDT:USDT"], "streams": ["trades"]},
        ],
        sim={"seed": 7, "speed": 600, "faults": {"sequence_every_s": 60.0}},
        capture={"flush_interval_s": 0.5, "stats_interval_s": 1.0, "book_interval_s": 5.0,
                 "order_book_rest_interval_s": 30.0},
    )  # fmt: skip

    def enough(data: Path) -> bool:
        books = landed_so_far(data, "order_book", ["symbol", "from_rest"])
        okx, bybit = books[books["symbol"] == "BTC/USDT:USDT"], books[books["symbol"] == "ETH/USDT:USDT"]
        return (okx["from_rest"] == 1).sum() >= 2 and (okx["from_rest"] == 0).sum() >= 10 and len(bybit) >= 4

    proc = run_until(config, 2, enough)
    assert proc.returncode == 0, proc.stderr[-3000:]
    books = landed(tmp_path / "data", "order_book")
    okx, bybit = books[books["symbol"] == "BTC/USDT:USDT"], books[books["symbol"] == "ETH/USDT:USDT"]
    repairs = okx[okx["from_rest"] == 1].sort_values("ts_ms")
    assert len(repairs) >= 2 and (okx["from_rest"] == 0).sum() >= 10
    events = landed(tmp_path / "data", "capture_events")
    gaps = events[(events["kind"] == int(EventKind.GAP)) & (events["symbol"] == "BTC/USDT:USDT")]
    gaps = gaps.sort_values("end_ms")
    assert set(gaps["reason"]) == {"sequence"} and gaps["end_ms"].tolist() == repairs["ts_ms"].tolist()
    # Each repair landed, newer than the book before its break (a lost update is a change of the book), none
    # dropped as a repeat of the last streamed book; every break the sim injected was reported, and all but
    # at most the last (a break just before the stop, its repair not yet fetched) were repaired.
    assert (gaps["start_ms"].to_numpy() < repairs["ts_ms"].to_numpy()).all()
    assert not ((events["kind"] == int(EventKind.DUPLICATE)) & (events["stream"] == int(StreamCode.ORDER_BOOK))).any()
    breaks = summed(source_counts(proc.stdout), "faults_injected")["sequence|order_book|BTC/USDT:USDT"]
    reconnects = events[(events["kind"] == int(EventKind.RECONNECT)) & (events["symbol"] == "BTC/USDT:USDT")]
    assert set(reconnects["reason"]) == {"sequence:InvalidNonce"} and reconnects["count"].sum() == breaks
    assert breaks - 1 <= len(repairs) <= breaks
    polled = bybit.sort_values("ts_ms")
    assert len(polled) >= 4 and set(polled["from_rest"]) == {1} and (polled["ts_ms"].diff().dropna() >= 30_000).all()
    for exchange_id, rows in (("okx", okx), ("bybit", bybit)):
        sim = SimExchange(exchange_id, load_config(config).sim)
        asyncio.run(sim.load_markets())
        for row in rows.itertuples():
            book = sim.book.structure(sim._m[row.symbol], int(row.ts_ms), 20)  # noqa: SLF001 - the served book
            size = sim.markets[row.symbol]["contractSize"] or 1.0
            assert int(row.nonce) == book["nonce"] and list(row.bid_price) == [p for p, _ in book["bids"]]
            assert list(row.ask_size) == pytest.approx([a * size for _, a in book["asks"]], rel=1e-12)


def test_a_host_without_a_watcher_is_refused_unless_the_first_host_only_lands() -> None:
    from mpi_jobs.capture import Layout, layout_error

    # world ranks 0 (host 0, alone) and 1, 2 (host 1: its flusher and one watcher)
    layout = Layout(0, 3, 0, 0, 1, 2, watchers=[2], local_watchers=[], node_sizes=[1, 2])
    assert "ranks per node [1, 2]" in (layout_error(layout, "each_host") or "")
    assert layout_error(layout, "first_host") is None
    lonely_second = Layout(0, 3, 0, 0, 2, 2, watchers=[1], local_watchers=[1], node_sizes=[2, 1])
    assert layout_error(lonely_second, "first_host") is not None


def test_sim_open_interest_and_liquidations_land_exactly_as_the_simulator_emitted_them(tmp_path: Path) -> None:
    """Both streams through mpiexec, the rings and the flusher: every poll's open interest and every liquidation
    print the simulator sent (its own count) lands once, equal to what a fresh simulator of the same seed
    serves at that time; bybit's side convention (the position's) and okx's (the order's) land as one."""
    streams = ["open_interest", "liquidations"]
    config = write_config(
        tmp_path,
        exchanges=[
            {"id": "bybit", "symbols": ["BTC/USDT", "BTC/USDT:USDT"], "streams": streams},
            {"id": "okx", "symbols": ["ETH/USDT:USDT"], "streams": streams},
        ],
        sim={"seed": 7, "speed": 3600},
        capture={"flush_interval_s": 0.5, "stats_interval_s": 1.0, "open_interest_interval_s": 60.0},
    )
    perps = {"BTC/USDT:USDT": "bybit", "ETH/USDT:USDT": "okx"}

    def enough(data: Path) -> bool:
        interest = landed_so_far(data, "open_interest", ["symbol"])["symbol"].value_counts()
        prints = landed_so_far(data, "liquidations", ["symbol"])["symbol"].value_counts()
        return all(interest.get(s, 0) >= 50 and prints.get(s, 0) >= 5 for s in perps)

    proc = run_until(config, 3, enough)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = tmp_path / "data"
    emitted = summed(source_counts(proc.stdout), "emitted")
    interest, prints = landed(data, "open_interest"), landed(data, "liquidations")
    assert set(interest["symbol"]) == set(prints["symbol"]) == set(perps)  # spot BTC/USDT: neither stream
    for symbol, exchange_id in perps.items():
        sim = SimExchange(exchange_id, load_config(config).sim)
        asyncio.run(sim.load_markets())
        m = sim._m[symbol]  # noqa: SLF001 - the served values, asked independently
        rows = interest[interest["symbol"] == symbol].sort_values("ts_ms")
        assert len(rows) == emitted[f"open_interest|{symbol}"] >= 50, symbol
        for row in rows.itertuples():
            served = sim.positioning.open_interest(m, int(row.ts_ms))
            assert (row.contracts, row.value) == (served["openInterestAmount"], served["openInterestValue"])
        got = prints[prints["symbol"] == symbol].sort_values(["ts_ms", "liquidation_id"])
        assert len(got) == emitted[f"liquidations|{symbol}"] >= 5, symbol
        served = sim.positioning.between(m, int(got["ts_ms"].min()) - 1, int(got["ts_ms"].max()))
        assert got["ts_ms"].tolist() == [s["timestamp"] for s in served]  # every print between, each once
        assert got["price"].tolist() == [s["price"] for s in served]
        long_side = "buy" if exchange_id == "bybit" else "sell"
        assert got["position_side"].tolist() == [1 if s["side"] == long_side else -1 for s in served]
