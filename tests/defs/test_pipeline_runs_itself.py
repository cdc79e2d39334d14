"""The pipeline runs itself: a real `dagster-daemon` on the demo's instance (the demo is the first phase: a REST
history pull, a real MPI capture and the paper trader's run on its replay, loaded by the daemon's sensors alone),
then, with the daemon running, one more hour of market data lands with another trader's first trade and its
snapshots (written by the trader's own ledger, on a market the demo's trader did not trade). Every asset, from the
raw and execution tables through `alerts`, the daily tables, the backtests and the risk of the live book, has a
materialization for the new data, made by the sensors alone, in dependency order, each landed hour loaded once.
Asserts the warehouse's rows against the landed files and the alerts a local webhook received over HTTP, not only
that runs happened."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from dagster import AssetKey, DagsterInstance, RunsFilter

from fundarb_dagster.core import landing
from fundarb_dagster.core.execution import ledger as rows
from fundarb_dagster.core.execution.ids import OrderKey, Purpose, client_order_id, decision_id, pair_tag
from fundarb_dagster.core.execution.ledger import Ledger
from fundarb_dagster.core.execution.machine import LegOrder
from fundarb_dagster.core.execution.sizing import LegMarket
from fundarb_dagster.core.landing import landing_root
from fundarb_dagster.core.schema import EXECUTION_STREAMS
from fundarb_dagster.core.units import DAY_MS, HOUR_MS
from fundarb_dagster.defs.common.landing import hour_folders
from fundarb_dagster.defs.jobs import STAGE_BY_JOB, STAGES, stage_asset_names
from fundarb_dagster.defs.partitions import Partitions, key_ms, partitions_start
from fundarb_dagster.defs.sensors import STREAMS, pipeline_status, run_span
from fundarb_dagster.demo import failed_steps, landed_streams
from fundarb_dagster.instance import dagster_env, start_daemon, stop_daemon
from tests.conftest import DemoRun, copy_demo

SETTLE_TIMEOUT_S = 600.0
# The trader's pair: hyperliquid settles funding every hour, so every hour it holds the pair is a settlement. SOL:
# the demo's paper trader trades BTC and ETH (and leaves them held), so this pair's funding is this trader's alone.
PERP = LegMarket("hyperliquid", "SOL/USDC:USDC", "perp", "SOL", "USDC", 1.0, 0.01, 0.0, 10.0)
SPOT = LegMarket("hyperliquid", "SOL/USDC", "spot", "SOL", "USDC", 1.0, 0.01, 0.0, 10.0)
PAIR = f"{PERP.exchange}:{PERP.symbol}|{SPOT.exchange}:{SPOT.symbol}"
UNITS = 100.0
FILL_AFTER_MS = 30  # the trader's fills, this long into the new hour


class Webhook:
    """A local HTTP endpoint the alert channels post to (FUNDARB_WEBHOOK_URL): what a desk would receive."""

    def __init__(self) -> None:
        self.alerts: list[dict] = []
        self.received_at: list[float] = []  # wall time each alert arrived
        received, times = self.alerts, self.received_at

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                times.append(time.time())
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _wait_settled(instance: DagsterInstance, data: Path, partitions: Partitions, daemon, log: Path) -> float:
    started, settled = time.monotonic(), 0
    while settled < 3:
        assert daemon.poll() is None, log.read_text()[-4000:]
        status = pipeline_status(instance, data, partitions)
        settled = settled + 1 if status.settled else 0
        assert time.monotonic() - started < SETTLE_TIMEOUT_S, f"not settled: {status}\n{log.read_text()[-4000:]}"
        time.sleep(3.0)
    return time.monotonic() - started


def _wait_ticked(instance: DagsterInstance, sensors: tuple[str, ...], since: float, daemon, log: Path) -> float:
    """Wait until the daemon has evaluated each sensor since `since` (wall time); return the seconds it took."""
    while True:
        assert daemon.poll() is None, log.read_text()[-4000:]
        states = {s.instigator_name: s for s in instance.all_instigator_state()}
        ticked = [
            name
            for name in sensors
            if name in states
            and instance.get_ticks(states[name].instigator_origin_id, states[name].selector_id, after=since, limit=1)
        ]
        if len(ticked) == len(sensors):
            return time.time() - since
        assert time.time() - since < SETTLE_TIMEOUT_S, f"sensors did not tick: {sorted(set(sensors) - set(ticked))}"
        time.sleep(2.0)


@pytest.mark.slow
@pytest.mark.mpi
def test_landed_files_reach_alerts_and_every_asset_with_only_the_daemon_running(
    demo_run: DemoRun, tmp_path: Path, monkeypatch
):
    # The demo's data and instance, as `fundarb ui` would open them later (a copy: the demo's test reads its own).
    data = copy_demo(demo_run, tmp_path / "data")
    webhook = Webhook()
    for name in ("DAGSTER_HOME", "FUNDARB_DATA_DIR", "FUNDARB_CONFIG", "FUNDARB_WAREHOUSE", "FUNDARB_PARTITIONS_START"):
        monkeypatch.delenv(name, raising=False)
    env = {**dagster_env(data), "FUNDARB_WEBHOOK_URL": webhook.url}
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    partitions = partitions_start(data)  # unset: the first landed day, as the daemon's code location finds it
    assert partitions.start == date(2026, 10, 30)
    log = tmp_path / "daemon.log"
    with log.open("w") as log_file:
        daemon = start_daemon(env, log_file)
        try:
            with DagsterInstance.get() as instance:
                demo_runs, started = len(instance.get_run_records()), time.time()
                # nothing new landed since the demo: both sensors tick and start nothing
                waited = _wait_ticked(instance, ("landing_sensor", "pipeline_sensor"), started, daemon, log)
                _wait_settled(instance, data, partitions, daemon, log)
                assert len(instance.get_run_records()) == demo_runs
                # One more hour as a capture and a trader land it: the trader's first trade and snapshots, the
                # newest hour's trades and funding again an hour later, and the hour after (which closes it on
                # the data's clock). It must reach alerts and the live book's risk by itself.
                trader = Ledger(data, "trader-test")
                next_hours, landed_at = _land_next_hours(data, trader), time.time()
                new_hour = next_hours.new_hour
                _wait_settled(instance, data, partitions, daemon, log)
                runs = sorted(
                    (r for stage in STAGES for r in instance.get_run_records(RunsFilter(job_name=stage.job))),
                    key=lambda r: r.create_timestamp,
                )
                failures = failed_steps(instance)
                events = instance.get_latest_materialization_events([AssetKey(n) for n in stage_asset_names()])
                raw_hours = set(instance.get_materialized_partitions(AssetKey("raw_trades")))
        finally:
            stop_daemon(daemon)
            webhook.close()
    t0 = runs[0].create_timestamp.timestamp()
    for r in runs:  # the timeline, for the delay bound in the docs (-s shows it)
        window = r.dagster_run.tags.get("fundarb/window") or r.dagster_run.tags.get("dagster/partition")
        print(
            f"{r.dagster_run.job_name:14} queued {r.create_timestamp.timestamp() - t0:6.1f} "
            f"start {r.start_time - t0:6.1f} end {r.end_time - t0:6.1f}  {r.dagster_run.status.value:8} {window}"
        )
    print(f"the restarted daemon's sensors ticked {waited:.0f} s after its start, found nothing new; {len(runs)} runs")

    # the new hour: loaded by one hourly_job run, then alerts and the live book evaluated over it (in runs of
    # their own, or with the next hour when that completed before they started: windows merge)
    def covering(job: str, hour: int = new_hour) -> list:
        return [r for r in runs if r.dagster_run.job_name == job and hour in _hours(r.dagster_run.tags)]

    assert len(covering("hourly_job")) == 1
    signals = min(covering("signals_job"), key=lambda r: r.end_time)  # the next hour's run looks back over it
    assert signals.dagster_run.status.value == "SUCCESS"
    [execution] = covering("execution_job")
    mismatch = next(a for a in webhook.alerts if a["rule"] == "funding_mismatch")
    print(
        f"a new hour's files reached alerts {signals.end_time - landed_at:.0f} s and the live book's risk "
        f"{execution.end_time - landed_at:.0f} s after they landed; the next hour's funding mismatch reached the "
        f"webhook {webhook.received_at[webhook.alerts.index(mismatch)] - landed_at:.0f} s after it landed (that "
        "hour is complete once its files have been quiet for 20 s: no later hour landed)"
    )

    # Nothing failed but what must: the venue booked the settlement the pair was held through with the wrong
    # sign, so the execution run over that hour failed its blocking reconciliation check (its assets, the live
    # P&L and the risk of the live book included, still materialized, and the mismatch was alerted).
    [settled_run] = covering("execution_job", next_hours.settled_ms // HOUR_MS * HOUR_MS)
    statuses = {r.dagster_run.run_id: r.dagster_run.status.value for r in runs}
    assert {run_id for run_id, status in statuses.items() if status != "SUCCESS"} == {settled_run.dagster_run.run_id}
    assert len(failures) == 1 and failures[0].startswith(f"  execution_job {settled_run.dagster_run.run_id[:8]}")
    assert "funding_reconciliation_matches_the_venue" in failures[0]
    assert mismatch["subject"] == f"{PERP.exchange}:{PERP.symbol}" and "wrong sign" in mismatch["message"]
    # every asset of the graph has a materialization, and nothing was launched but by the two sensors
    assert [name for name in stage_asset_names() if events.get(AssetKey(name)) is None] == []
    assert {r.dagster_run.tags.get("fundarb/trigger", "").split(" ")[0] for r in runs} == {
        "landing_sensor",
        "pipeline_sensor",
    }
    # dependency order: every run started after a run of each stage it follows had ended
    ended: dict[str, list[float]] = {}
    for record in sorted(runs, key=lambda r: r.start_time or 0):
        stage = STAGE_BY_JOB[record.dagster_run.job_name]
        if stage.after:
            assert any(t <= record.start_time for job in stage.after for t in ended.get(job, [])), stage.job
        ended.setdefault(stage.job, []).append(record.end_time)
    # each landed hour loaded once, in order: hourly_job windows do not overlap and cover every landed hour,
    # and no two runs of a stage ran at the same time
    landed = {hour for hour, _, _ in hour_folders(data, STREAMS)}
    hours = [h for r in runs if r.dagster_run.job_name == "hourly_job" for h in _hours(r.dagster_run.tags)]
    assert len(hours) == len(set(hours)), "an hour was loaded twice"
    assert landed <= set(hours)
    assert {key_ms(k) for k in raw_hours} >= landed
    for stage in STAGES:
        spans = sorted((r.start_time, r.end_time) for r in runs if r.dagster_run.job_name == stage.job)
        assert all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1)), stage.job
    # the execution stage ran from the first landed fill on (the demo's paper trader's), over every hour loaded
    # since, each once: the demo's hours by the demo's daemon, the two new ones by this one
    executed = [h for r in runs if r.dagster_run.job_name == "execution_job" for h in _hours(r.dagster_run.tags)]
    first_fill = min(hour for hour, _, _ in hour_folders(data, ["fills"]))
    assert first_fill < new_hour
    assert sorted(executed) == [h for h in sorted(hours) if h >= first_fill]
    assert sorted(executed)[-2:] == [new_hour, new_hour + HOUR_MS]
    streams = landed_streams(data)
    first = min(s[2] for name, s in streams.items() if name != "capture_stats") // HOUR_MS * HOUR_MS
    last = max(s[3] for name, s in streams.items() if name != "capture_stats") // HOUR_MS * HOUR_MS

    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    try:
        # the rows: every landed trade is in raw_trades, the bars reach the newest landed minute of trades
        assert con.execute("SELECT count(*) FROM raw_trades").fetchone()[0] == streams["trades"][1]
        newest_bar = con.execute("SELECT epoch_ms(max(ts)) FROM ohlcv_1m WHERE source = 'trades'").fetchone()[0]
        assert newest_bar == streams["trades"][3] // 60_000 * 60_000
        # funding, spreads and the ranking reach the newest hour with funding; alerts were evaluated on them
        newest_funding = streams["funding"][3] // HOUR_MS * HOUR_MS
        assert con.execute("SELECT epoch_ms(max(ts)) FROM funding_spreads").fetchone()[0] >= newest_funding
        assert con.execute("SELECT epoch_ms(max(as_of)) FROM opportunities").fetchone()[0] == newest_funding
        assert con.execute("SELECT count(*) FROM opportunities").fetchone()[0] > 0
        assert con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'alerts'").fetchone()[0]
        # the days that ended on the data's clock have daily bars; both strategies were backtested, and their
        # books' risk reported
        days = {row[0] for row in con.execute("SELECT DISTINCT epoch_ms(ts) FROM ohlcv_1d").fetchall()}
        assert set(range(first // DAY_MS * DAY_MS, last // DAY_MS * DAY_MS, DAY_MS)) <= days
        strategies = {row[0] for row in con.execute("SELECT DISTINCT strategy FROM backtest_runs").fetchall()}
        assert strategies == {"cash_carry", "perp_perp"}
        books = {row[0] for row in con.execute("SELECT DISTINCT source_run_id FROM risk_report").fetchall()}
        assert "live" in books and len(books - {"live"}) == 2
        # the traders' streams: every landed record in its table (the demo's paper trader's and this one's)
        demo_landed = landed_streams(demo_run.data)
        for stream in EXECUTION_STREAMS:
            landed_rows = demo_landed[stream][1] + trader.landed[stream]
            assert con.execute(f"SELECT count(*) FROM {stream}").fetchone()[0] == landed_rows, stream
        # funding reconciled at the one settlement held through: the model's payment computed here from what
        # landed (the short perp receives UNITS x rate x price), the venue's booked with the wrong sign
        rec = con.execute(
            "SELECT epoch_ms(funding_ts), expected_usd, booked_usd, status, explanation FROM funding_reconciliation "
            "WHERE exchange = ? AND symbol = ?",
            [PERP.exchange, PERP.symbol],
        ).fetchall()
        expected = UNITS * next_hours.rate * next_hours.mark
        assert abs(expected) > 0.01  # a mismatch the tolerance (a cent) cannot hide
        assert [(t, s, e) for t, _, _, s, e in rec] == [(next_hours.settled_ms, "mismatch", "wrong sign")]
        assert rec[0][1] == pytest.approx(expected) and rec[0][2] == pytest.approx(-expected)
        # the live P&L reaches the newest hour; the live book's risk is of every pair leg held at its last
        # snapshot's mark (this pair's, and what the demo's paper trader still held when its run ended)
        assert con.execute("SELECT epoch_ms(max(ts)) FROM live_pnl").fetchone()[0] == new_hour + HOUR_MS
        gross = con.execute(
            "SELECT value FROM risk_report WHERE source_run_id = 'live' AND name = 'gross_usd' "
            "ORDER BY created_at DESC LIMIT 1"
        ).fetchone()[0]
        snapshots = con.execute("SELECT pair, leg, ts_ms, units, mark_price FROM positions").df()
        last = snapshots.sort_values("ts_ms").groupby(["pair", "leg"]).tail(1)
        assert PAIR in set(last["pair"])
        assert gross == pytest.approx(float((last["units"].abs() * last["mark_price"]).sum()))
    finally:
        con.close()


def _trade_the_pair(book: Ledger, at_ms: int, prices: dict[str, float]) -> None:
    """Short the perp and buy the spot: the trader's orders and fills, `FILL_AFTER_MS` after `at_ms`."""
    decision = decision_id(PAIR, at_ms, "target:+1:test")
    fill_ms = at_ms + FILL_AFTER_MS
    for leg, (market, side) in enumerate(((PERP, -1), (SPOT, 1))):
        price = prices[market.symbol]
        cid = client_order_id(OrderKey(pair_tag(PAIR), decision, leg, Purpose.ENTRY, 0), market.exchange)
        order = LegOrder(cid, leg, side, UNITS, False, Purpose.ENTRY, decision, 0, at_ms)
        book.add("orders", rows.order_record(order, pair=PAIR, leg=market, ts_ms=at_ms, recv_ts_ms=at_ms))
        fee = {"cost": UNITS * price * 4.5e-4, "currency": market.quote}
        trade = {"id": f"t{leg}", "order": f"o{leg}", "timestamp": fill_ms, "amount": UNITS, "price": price}
        trade |= {"side": "buy" if side > 0 else "sell", "fee": fee, "takerOrMaker": "taker"}
        book.add("fills", rows.fill_record(trade, pair=PAIR, leg_index=leg, leg=market, client_order_id=cid,
                                           ref_mid=price, recv_ts_ms=fill_ms + 10))  # fmt: skip


def _hold_the_pair(book: Ledger, hour_ms: int, prices: dict[str, float]) -> None:
    """The trader's snapshots of an hour while it holds the pair: positions marked at the hour's price, balances."""
    at = hour_ms + 60_000
    for leg, (market, units) in enumerate(((PERP, -UNITS), (SPOT, UNITS))):
        mark = prices[market.symbol]
        values = {"ts_ms": at, "recv_ts_ms": at, "units": units, "target_units": units, "venue_units": units}
        values |= {"entry_price": mark, "mark_price": mark, "wallet_usd": UNITS * mark if leg == 0 else 0.0}
        values |= {"liquidation_price": float("nan"), "mmr": 0.005, "taker_fee": 4.5e-4, "leverage": 2.0}
        values |= {"leg": leg, "is_perp": int(leg == 0), "phase": 0, "exchange": market.exchange}
        values |= {"symbol": market.symbol, "underlying": market.base, "pair": PAIR, "decision": "hold"}
        book.add("positions", rows.position_record(values))
    balance = {"total": {"USDC": 100_000.0}, "free": {"USDC": 60_000.0}, "used": {"USDC": 40_000.0}}
    book.add("balances", rows.balance_records(PERP.exchange, balance, at, at, equity_usd=100_000.0))


def _last_price(data: Path, market: LegMarket) -> float:
    """The market's last landed trade price (the newest hours may not hold a trade of every market)."""
    for hour in sorted((h for h, _, _ in hour_folders(data, ["trades"])), reverse=True):
        table = pq.read_table(sorted(landing.partition_dir(data, "trades", hour).glob("*.parquet")))
        mine = pc.and_(pc.equal(table["exchange"], market.exchange), pc.equal(table["symbol"], market.symbol))
        rows_of = table.filter(mine).sort_by("ts_ms")
        if len(rows_of):
            return float(rows_of["price"][-1].as_py())
    raise AssertionError(f"no trade of {market.exchange} {market.symbol} landed")


def _next_settlements(funding: pa.Table) -> pa.Table:
    """Streamed funding values name the next settlement on their venue's grid: recomputed after a shift."""
    step = (funding["interval_h"].to_numpy() * HOUR_MS).astype("int64")
    ts = funding["ts_ms"].to_numpy()
    index = funding.schema.get_field_index("funding_ts_ms")
    return funding.set_column(index, "funding_ts_ms", pa.array((ts // step + 1) * step, pa.int64()))


def _shifted(table: pa.Table, columns: tuple[str, ...], offset: int) -> pa.Table:
    for column in columns:
        step = pa.scalar(offset, table.schema.field(column).type)
        table = table.set_column(table.schema.get_field_index(column), column, pc.add(table.column(column), step))
    return table


@dataclass(frozen=True)
class NextHours:
    new_hour: int  # the first new hour (ms)
    settled_ms: int  # the settlement the trader held the pair through (the second new hour's start)
    rate: float  # its settled rate
    mark: float  # the price it is paid on (hyperliquid pays on the oracle, which the settled row states)


def _land_next_hours(data: Path, trader: Ledger) -> NextHours:
    """The newest hour's trades and streamed funding landed again in the next two hours (new trade ids),
    the perp's settled rate at the start of the second hour (as a REST history pull lands it), and the trader's
    trade, snapshots and the funding the venue booked it, with the wrong sign.

    The trader's files land first and the hour after the new one last: until then the new hour is not complete
    (no later hour of market data, files younger than the quiet time), so it loads in one run."""
    newest = max(hour for hour, _, _ in hour_folders(data, ["trades"]))
    trades = pq.read_table(sorted(landing.partition_dir(data, "trades", newest).glob("*.parquet")))
    # the hours to land after: the newest landed of any stream (the demo's paper trader's last snapshots lie in
    # the hour after the capture's last trades), so that the new hours are new to the sensors
    last = max(hour for hour, _, _ in hour_folders(data, STREAMS))
    # the newest whole hour of streamed funding (the capture's last hour is cut short: it may hold one venue's)
    funded = max(hour for hour, _, _ in hour_folders(data, ["funding"]) if hour < newest)
    funding = pq.read_table(sorted(landing.partition_dir(data, "funding", funded).glob("*.parquet")))
    prices = {market.symbol: _last_price(data, market) for market in (PERP, SPOT)}
    # the perp's newest settled rate (the history pull's), settled again at the second new hour at today's price
    every = pq.read_table(sorted(landing_root(data).glob("funding/date=*/hour=*/*.parquet")))
    mine = pc.and_(pc.equal(every["symbol"], PERP.symbol), pc.equal(every["is_settled"], 1))
    history = every.filter(pc.and_(pc.equal(every["exchange"], PERP.exchange), mine)).sort_by([("ts_ms", "descending")])
    settled_ms = last + 2 * HOUR_MS
    settled = _shifted(
        history.slice(0, 1), ("ts_ms", "recv_ts_ms", "funding_ts_ms"), settled_ms - history["ts_ms"][0].as_py()
    )
    for column in ("mark_price", "index_price"):  # the settled row states the oracle price it is paid on
        settled = settled.set_column(settled.schema.get_field_index(column), column, pa.array([prices[PERP.symbol]]))
    rate = settled["funding_rate"][0].as_py()

    _trade_the_pair(trader, last + HOUR_MS, prices)
    for k in (1, 2):
        _hold_the_pair(trader, last + k * HOUR_MS, prices)
    # the model's payment to the short perp is -units x rate x price = +UNITS x rate x price: booked negated
    booked = {"timestamp": settled_ms + 3, "symbol": PERP.symbol, "code": "USDC", "id": "f1"}
    booked["amount"] = -UNITS * rate * prices[PERP.symbol]
    trader.add("funding_payments", rows.funding_record(PERP.exchange, booked, settled_ms + 5))
    trader.flush()
    for k in (1, 2):
        times = ("ts_ms", "recv_ts_ms")
        later = _next_settlements(_shifted(funding, times, last - funded + k * HOUR_MS))
        landing.write_stream(data, "funding", later, "next", k)
        shifted = _shifted(_shifted(trades, times, last - newest + k * HOUR_MS), ("trade_id",), k * 10**12)
        landing.write_stream(data, "trades", shifted, "next", k)
    landing.write_stream(data, "funding", settled, "history-next", 0)
    return NextHours(last + HOUR_MS, settled_ms, rate, prices[PERP.symbol])


def _hours(tags: dict[str, str]) -> list[int]:
    span = run_span(tags)
    return list(range(span[0], span[1], HOUR_MS)) if span else []
