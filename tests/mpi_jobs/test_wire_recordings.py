"""Every recorded websocket session in fixtures/ws_recordings/, replayed through the real capture job.

One row per recording (`RECORDINGS`): the venue, the symbols by the venue's own ids, the streams captured,
and the channels that must feed them. Each row runs `mpiexec python -m mpi_jobs.capture` with `source:
wire` at full speed, reads what landed (Parquet), and compares it per stream and symbol with an independent
parse of the recording's frames written here with plain `json` (no project code, no ccxt): counts, first
and last ids and times, and every field of every row. The frames no watcher used are counted per channel,
in `capture_events` and the job's summary line, and asserted against the same parse.

Adding a recording is one row; adding a venue's recording also needs its frame parser (`PARSERS`).
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from fundarb_dagster.core.schema import EventKind

from .conftest import REPO, job_command

pytestmark = [pytest.mark.mpi, pytest.mark.slow]
NAN = math.nan
MINUTE_MS = 60_000
EVENT_KINDS = {name: int(EventKind[name]) for name in ("USED", "UNUSED", "CHANNEL")}  # the landed data's codes


# -- an independent reading of the recordings --------------------------------------------------------------
@dataclass
class Frame:
    recv_ms: int
    kind: str | None  # the connection's market kind (spot, linear, inverse), None when one socket serves all
    msg: Any


@dataclass
class Session:
    frames: list[Frame]
    http: list[tuple[str, str]]


def read_session(path: Path, conn_kinds: dict[str, str]) -> Session:
    """Frames with their connection's market kind (from the connect records, else the row's table)."""
    if path.suffix == ".zst":
        with pa.input_stream(str(path), compression="zstd") as stream:
            lines = stream.read().decode().splitlines()
    else:
        lines = path.read_text().splitlines()
    kinds, frames, http = dict(conn_kinds), [], []
    for line in lines:
        row = json.loads(line)
        if "msg" in row:  # a frame log
            frames.append(Frame(int(row["recv_ts_s"] * 1000), kinds.get(row["conn"]), row["msg"]))
        elif row["t"] == "connect":
            tail = row["addr"].split("?")[0].rstrip("/").rsplit("/", 1)[-1]
            host = row["addr"].split("/")[2]
            kinds.setdefault(row["conn"], tail if tail in ("spot", "linear", "inverse") else None)
            if host.startswith("fstream"):
                kinds[row["conn"]] = "linear"
        elif row["t"] == "recv":
            try:
                msg = json.loads(row["data"])
            except ValueError:
                msg = row["data"]
            frames.append(Frame(int(row["ts"] * 1000), kinds.get(row["conn"]), msg))
        elif row["t"] == "http":
            http.append((row["url"], row["data"]))
    return Session(frames, http)


def trade_id(text: str) -> int:
    """The landed id: a numeric venue id as is, any other the first 8 bytes of its blake2b, little-endian, 63 bits."""
    if text.isdigit() and int(text) < 2**63:
        return int(text)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") & (2**63 - 1)


@dataclass(frozen=True)
class Contract:
    size: float = 1.0  # base (linear) or quote (inverse) units per contract
    inverse: bool = False

    def base(self, contracts: float, price: float) -> float:
        return contracts * self.size / price if self.inverse else contracts * self.size


@dataclass
class Expected:
    trades: dict[str, list[tuple]] = field(default_factory=lambda: defaultdict(list))
    tickers: dict[str, list[tuple]] = field(default_factory=lambda: defaultdict(list))
    ohlcv: dict[str, list[tuple]] = field(default_factory=lambda: defaultdict(list))
    funding: dict[str, list[tuple]] = field(default_factory=lambda: defaultdict(list))
    channels: Counter[str] = field(default_factory=Counter)  # "<kind>:<channel>" -> frames; "control"
    end_ms: int = 0


class Accept:
    """The capture's rules every tickers/funding row passes, restated: a row with the time of the one
    before is a duplicate, an older one out of order (both dropped); then funding values that repeat the
    last one kept are kept once a minute."""

    def __init__(self) -> None:
        self.last_ts: dict[str, int] = {}
        self.kept: dict[str, tuple[tuple, int]] = {}

    def in_order(self, symbol: str, ts: int) -> bool:
        last = self.last_ts.get(symbol)
        if last is not None and ts <= last:
            return False
        self.last_ts[symbol] = ts
        return True

    def changed(self, symbol: str, key: tuple, recv_ms: int) -> bool:
        kept = self.kept.get(symbol)
        if kept is not None and kept[0] == key and recv_ms - kept[1] < 60_000:
            return False
        self.kept[symbol] = (key, recv_ms)
        return True


def market_frames(
    session: Session, out: Expected, split: Callable[[Any], tuple[str, str] | None], kinds: bool = True
) -> Any:
    """(frame, channel, venue id) of every market-data frame, counting each under `<kind>:<channel>` (or
    the channel alone where one socket serves all kinds), control frames under `control`."""
    for frame in session.frames:
        parts = split(frame.msg)
        if parts is None:
            out.channels["control"] += 1
            continue
        channel, venue_id = parts
        out.channels[f"{frame.kind}:{channel}" if kinds else channel] += 1
        out.end_ms = frame.recv_ms
        yield frame, channel, venue_id


def _bybit_topic(msg: Any) -> tuple[str, str] | None:
    """`orderbook.200.BTCUSDT` -> (`orderbook.200`, `BTCUSDT`); acks carry no topic."""
    return (msg["topic"].rpartition(".")[0], msg["topic"].rpartition(".")[2]) if "topic" in msg else None


def _okx_arg(msg: Any) -> tuple[str, str] | None:
    return (msg["arg"]["channel"], msg["arg"]["instId"]) if "data" in msg else None  # acks carry an event


def _binance_stream(msg: Any) -> tuple[str, str] | None:
    """`sushiusdt@depth@100ms` -> (`depth@100ms`, `sushiusdt`)."""
    if "stream" not in msg:
        return None
    venue_id, _, channel = msg["stream"].partition("@")
    return channel, venue_id


def closed_candles(bars: dict[str, dict[int, tuple]], end_ms: int) -> dict[str, list[tuple]]:
    """The last values of each minute, for minutes over by the end of the recording."""
    return {s: [b for t, b in sorted(by.items()) if t + MINUTE_MS <= end_ms] for s, by in bars.items()}


def f(value: Any) -> float:
    return NAN if value in (None, "") else float(value)


def parse_bybit(session: Session, row: Recording) -> Expected:
    """Bybit v5 public: tickers (snapshot + deltas merged), publicTrade, kline.1, orderbook.N (spot quotes)."""
    out, accept, funding_accept = Expected(), Accept(), Accept()
    state: dict[tuple, dict[str, Any]] = {}
    books: dict[str, tuple[dict[float, float], dict[float, float]]] = {}
    last_top: dict[str, tuple] = {}
    bars: dict[str, dict[int, tuple]] = defaultdict(dict)
    for frame, channel, venue_id in market_frames(session, out, _bybit_topic):
        msg = frame.msg
        symbol = row.symbols.get((frame.kind, venue_id))
        if symbol is None:
            continue
        if channel == "publicTrade":
            for t in msg["data"]:
                side = {"Buy": 1, "Sell": -1}[t["S"]]
                out.trades[symbol].append((trade_id(t["i"]), t["T"], side, float(t["p"]), float(t["v"])))
        elif channel == "kline.1":
            for k in msg["data"]:
                values = (float(k[n]) for n in ("open", "high", "low", "close", "volume"))
                bars[symbol][k["start"]] = (k["start"], *values)
        elif channel == "tickers":
            key = (frame.kind, venue_id)
            state[key] = dict(msg["data"]) if msg["type"] == "snapshot" else {**state[key], **msg["data"]}
            d = state[key]
            if symbol in row.quotes_from_book:
                continue
            if accept.in_order(symbol, msg["ts"]):
                names = ("bid1Price", "ask1Price", "bid1Size", "ask1Size", "lastPrice", "markPrice", "indexPrice")
                out.tickers[symbol].append((msg["ts"], *(f(d.get(n)) for n in names)))
            if "fundingRate" in d:
                fkey = (int(d["nextFundingTime"]), float(d["fundingRate"]), float(d["fundingIntervalHour"]))
                if funding_accept.in_order(symbol, msg["ts"]) and funding_accept.changed(symbol, fkey, frame.recv_ms):
                    out.funding[symbol].append((msg["ts"], *fkey, float(d["markPrice"]), float(d["indexPrice"])))
        elif channel.startswith("orderbook.") and symbol in row.quotes_from_book:
            data = msg["data"]
            if msg["type"] == "snapshot":
                books[symbol] = ({float(p): float(q) for p, q in data["b"]}, {float(p): float(q) for p, q in data["a"]})
            else:
                for side, updates in zip(books[symbol], (data["b"], data["a"]), strict=True):
                    for p, q in updates:
                        side.pop(float(p), None) if float(q) == 0 else side.__setitem__(float(p), float(q))
            bids, asks = books[symbol]
            bid, ask = max(bids), min(asks)
            top = (bid, bids[bid], ask, asks[ask])
            if top == last_top.get(symbol):
                continue
            last_top[symbol] = top
            if accept.in_order(symbol, msg["ts"]):
                out.tickers[symbol].append((msg["ts"], bid, ask, bids[bid], asks[ask], NAN, NAN, NAN))
    out.ohlcv = closed_candles(bars, out.end_ms)
    return out


def parse_okx(session: Session, row: Recording) -> Expected:
    """OKX v5 public: tickers, trades (books are not captured); contract sizes from the recorded instruments."""
    contracts: dict[str, Contract] = {}
    for url, body in session.http:
        if "/public/instruments" in url:
            for item in json.loads(body)["data"]:
                if item["ctVal"]:
                    contracts[item["instId"]] = Contract(float(item["ctVal"]), item["ctType"] == "inverse")
    out, accept = Expected(), Accept()
    for frame, channel, inst in market_frames(session, out, _okx_arg, kinds=False):
        msg = frame.msg
        symbol, contract = row.symbols.get((None, inst)), contracts.get(inst)
        for d in msg["data"] if symbol else []:
            if channel == "trades":
                side = {"buy": 1, "sell": -1}[d["side"]]
                price, size = float(d["px"]), float(d["sz"])
                amount = contract.base(size, price) if contract else size
                out.trades[symbol].append((int(d["tradeId"]), int(d["ts"]), side, price, amount)
                                          + ((size, contract.size) if contract else ()))  # fmt: skip
            elif channel == "tickers" and accept.in_order(symbol, int(d["ts"])):
                bid, ask, bid_size, ask_size = (float(d[n]) for n in ("bidPx", "askPx", "bidSz", "askSz"))
                sizes = (bid_size, ask_size)
                if contract:
                    sizes = (contract.base(bid_size, bid), contract.base(ask_size, ask))
                extra = (bid_size, ask_size, contract.size) if contract else ()
                out.tickers[symbol].append((int(d["ts"]), bid, ask, *sizes, float(d["last"]), NAN, NAN, *extra))
    return out


def parse_binance(session: Session, row: Recording) -> Expected:
    """Binance combined streams `{"stream": "<id>@<channel>", "data": ...}`: aggTrade, bookTicker, kline_1m."""
    out, accept = Expected(), Accept()
    bars: dict[str, dict[int, tuple]] = defaultdict(dict)
    for frame, channel, venue_id in market_frames(session, out, _binance_stream):
        msg = frame.msg
        symbol, d = row.symbols.get((frame.kind, venue_id.upper())), msg["data"]
        if symbol is None:
            continue
        if channel == "aggTrade":
            out.trades[symbol].append((d["a"], d["T"], -1 if d["m"] else 1, float(d["p"]), float(d["q"])))
        elif channel == "bookTicker" and accept.in_order(symbol, d["E"]):
            out.tickers[symbol].append((d["E"], *(float(d[n]) for n in ("b", "a", "B", "A")), NAN, NAN, NAN))
        elif channel.startswith("kline_"):
            k = d["k"]
            bars[symbol][k["t"]] = (k["t"], *(float(k[n]) for n in ("o", "h", "l", "c", "v")))
    out.ohlcv = closed_candles(bars, out.end_ms)
    return out


PARSERS: dict[str, Callable[[Session, Recording], Expected]] = {
    "bybit": parse_bybit,
    "okx": parse_okx,
    "binance": parse_binance,
}


# -- the table ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recording:
    file: str
    exchange: str
    symbols: dict[tuple[str | None, str], str]  # (connection kind, venue id) -> ccxt unified symbol
    streams: tuple[str, ...]
    used: frozenset[str]  # the channels (`<kind>:<channel>`) the capture must read; every other one is unused
    channel_events: frozenset[str]  # CHANNEL reasons: which ccxt call (and channel option) fed each stream
    conn_kinds: dict[str, str] = field(default_factory=dict)  # for frame logs without connect records
    quotes_from_book: frozenset[str] = frozenset()  # symbols whose quotes come from the top of a book


BYBIT_IDS = {("linear", "BTCUSDT"): "BTC/USDT:USDT", ("linear", "ETHUSDT"): "ETH/USDT:USDT",
             ("spot", "BTCUSDT"): "BTC/USDT", ("spot", "ETHUSDT"): "ETH/USDT"}  # fmt: skip
RECORDINGS = [
    Recording(
        "bybit_v5_btc_eth_tickers_trades_klines.jsonl",
        "bybit",
        BYBIT_IDS,
        ("trades", "tickers", "funding", "ohlcv"),
        used=frozenset(f"{k}:{c}" for k in ("linear", "spot") for c in ("tickers", "publicTrade", "kline.1")),
        channel_events=frozenset(
            {"trades:watch_trades", "tickers:watch_ticker:tickers", "ohlcv:watch_ohlcv", "funding:watch_ticker:tickers"}
        ),  # fmt: skip
        conn_kinds={"BYBIT.ws.2": "linear", "BYBIT.ws.3": "spot"},  # the BYBIT session's connect records
    ),
    Recording(
        "BYBIT.jsonl.zst",
        "bybit",
        {**BYBIT_IDS, ("linear", "SOLUSDT"): "SOL/USDT:USDT", ("linear", "DOGEUSDT"): "DOGE/USDT:USDT"},
        ("trades", "tickers", "funding", "ohlcv", "order_book", "open_interest"),
        # spot tickers carry no bid/ask: spot quotes come from the book the session subscribed (orderbook.200),
        # which also feeds the spot order_book stream; the linear books feed only the order_book stream; the
        # linear tickers carry the perps' open interest too
        used=frozenset(
            {
                "linear:tickers",
                "linear:publicTrade",
                "linear:kline.1",
                "linear:orderbook.200",
                "spot:orderbook.200",
                "spot:publicTrade",
                "spot:kline.1",
            }
        ),  # fmt: skip
        channel_events=frozenset(
            {
                "trades:watch_trades",
                "tickers:watch_ticker:tickers",
                "ohlcv:watch_ohlcv",
                "funding:watch_ticker:tickers",
                "tickers:watch_order_book:200",
                "order_book:watch_order_book:200",
                "open_interest:watch_ticker:tickers",
            }
        ),  # fmt: skip
        quotes_from_book=frozenset({"BTC/USDT", "ETH/USDT"}),
    ),
    Recording(
        "OKX.jsonl.zst",
        "okx",
        {
            (None, "BTC-USDT"): "BTC/USDT",
            (None, "UNI-USD-SWAP"): "UNI/USD:UNI",
            (None, "BTC-USD-220527"): "BTC/USD:BTC-220527",
        },  # fmt: skip
        ("trades", "tickers"),
        used=frozenset({"tickers", "trades"}),
        channel_events=frozenset({"trades:watch_trades", "tickers:watch_ticker"}),
    ),
    Recording(
        "BINANCE_FUTURES.jsonl.zst",
        "binance",
        {("linear", f"{b}USDT"): f"{b}/USDT:USDT" for b in ("SUSHI", "AKRO", "KEEP", "CTK")},
        ("trades", "tickers", "ohlcv", "order_book"),
        # the session streamed aggTrade and bookTicker: followed with no option given; its books are diffs over
        # a REST snapshot (the session's recorded `fapi/v1/depth` responses)
        used=frozenset({"linear:aggTrade", "linear:bookTicker", "linear:kline_1m", "linear:depth@100ms"}),
        channel_events=frozenset(
            {
                "trades:watch_trades:aggTrade",
                "tickers:watch_bids_asks",
                "ohlcv:watch_ohlcv:kline",
                "order_book:watch_order_book",
            }
        ),
    ),
]


@dataclass
class Captured:
    rows: dict[str, Any]  # stream -> landed frame
    stdout: str
    returncode: int
    data_dir: Path
    config: Path


def capture(fixtures_dir: Path, tmp_path: Path, row: Recording, **replay: Any) -> Captured:
    tmp_path.mkdir(parents=True, exist_ok=True)
    data_dir = tmp_path / "data"
    config = {
        "source": "wire",
        "data_dir": str(data_dir),
        # a fixture's name, or an absolute path (it stays absolute when joined)
        "replay": {"path": str(fixtures_dir / "ws_recordings" / row.file), "speed": 0, **replay},
        "exchanges": [{"id": row.exchange, "symbols": sorted(set(row.symbols.values())), "streams": list(row.streams)}],
        "capture": {"flush_interval_s": 0.5, "stats_interval_s": 5.0},
    }
    path = tmp_path / "capture.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(job_command(path, 2), cwd=REPO, capture_output=True, text=True, timeout=180)
    rows = {}
    for stream in (*row.streams, "capture_events"):
        root = data_dir / "landing" / stream
        rows[stream] = pq.read_table(root).to_pandas() if root.exists() else None
    return Captured(rows, done.stdout + done.stderr, done.returncode, data_dir, path)


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def assert_rows(stream: str, symbol: str, got: list[tuple], expected: list[tuple]) -> None:
    where = f"{stream} {symbol}"
    assert len(got) == len(expected) > 0, f"{where}: {len(got)} landed, {len(expected)} in the recording"
    assert (got[0][0], got[-1][0]) == (expected[0][0], expected[-1][0]), f"{where}: first/last"
    assert (got[0][1], got[-1][1]) == (expected[0][1], expected[-1][1]), f"{where}: first/last time"
    for g, e in zip(got, expected, strict=True):
        assert len(g) >= len(e) and all(same(a, b) for a, b in zip(g, e, strict=False)), f"{where}: {g} != {e}"


@pytest.fixture(scope="module", params=RECORDINGS, ids=[r.file for r in RECORDINGS])
def replayed(request: pytest.FixtureRequest, fixtures_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    row: Recording = request.param
    captured = capture(fixtures_dir, tmp_path_factory.mktemp(row.exchange), row)
    session = read_session(fixtures_dir / "ws_recordings" / row.file, row.conn_kinds)
    return row, captured, PARSERS[row.exchange](session, row)


def _landed(captured: Captured, stream: str, symbol: str, columns: list[str], order: list[str]) -> list[tuple]:
    frame = captured.rows[stream]
    if frame is None:
        return []
    mine = frame[frame["symbol"] == symbol].sort_values(order, kind="stable")
    return [tuple(r) for r in mine[columns].itertuples(index=False)]


def test_the_job_ends_by_itself_and_says_what_it_used(replayed: tuple[Recording, Captured, Expected]) -> None:
    row, captured, expected = replayed
    assert captured.returncode == 0, captured.stdout[-3000:]
    used = sum(n for c, n in expected.channels.items() if c in row.used)
    data = sum(n for c, n in expected.channels.items() if c != "control")
    frames = sum(expected.channels.values())
    line = f"[capture] replay frames {row.exchange}: {frames} frames, {used} used ({100 * used / data:.1f} % of {data}"
    assert line in captured.stdout, captured.stdout[-3000:]
    assert "frames used {" in captured.stdout  # the summary line carries them too


def test_trades_land_exactly_as_recorded(replayed: tuple[Recording, Captured, Expected]) -> None:
    row, captured, expected = replayed
    columns = ["trade_id", "ts_ms", "side", "price", "amount", "contracts", "contract_size"]
    for symbol in sorted(set(row.symbols.values())):
        want = sorted(expected.trades[symbol], key=lambda t: (t[1], t[0]))
        got = _landed(captured, "trades", symbol, columns, ["ts_ms", "trade_id"])
        assert_rows("trades", symbol, got, want)
        if len(want[0]) == 5 and ":" in symbol:  # a linear contract of size 1: contracts are the amount
            assert all(g[5] == g[4] and g[6] == 1.0 for g in got), symbol
        if ":" not in symbol:
            assert all(math.isnan(g[5]) and math.isnan(g[6]) for g in got), symbol


def test_tickers_land_with_quotes_from_the_right_channel(replayed: tuple[Recording, Captured, Expected]) -> None:
    row, captured, expected = replayed
    if "tickers" not in row.streams:
        return
    columns = ["ts_ms", "bid", "ask", "bid_size", "ask_size", "last", "mark_price", "index_price", "bid_contracts",
               "ask_contracts", "contract_size"]  # fmt: skip
    for symbol in sorted(set(row.symbols.values())):
        got = _landed(captured, "tickers", symbol, columns, ["ts_ms"])
        assert_rows("tickers", symbol, [(0, *g) for g in got], [(0, *e) for e in expected.tickers[symbol]])
        quoted = row.exchange != "bybit" or ":" in symbol or symbol in row.quotes_from_book
        assert all(not math.isnan(g[1]) and not math.isnan(g[2]) for g in got) == quoted, symbol


def test_candles_and_funding_land_exactly_as_recorded(replayed: tuple[Recording, Captured, Expected]) -> None:
    row, captured, expected = replayed
    if "ohlcv" in row.streams:
        for symbol in sorted(set(row.symbols.values())):
            got = _landed(captured, "ohlcv", symbol, ["ts_ms", "open", "high", "low", "close", "volume"], ["ts_ms"])
            assert_rows("ohlcv", symbol, [(0, *g) for g in got], [(0, *e) for e in expected.ohlcv[symbol]])
    if "funding" in row.streams:
        columns = ["ts_ms", "funding_ts_ms", "funding_rate", "interval_h", "mark_price", "index_price"]
        for symbol in sorted(s for s in set(row.symbols.values()) if ":" in s):
            got = _landed(captured, "funding", symbol, columns, ["ts_ms"])
            assert_rows("funding", symbol, [(0, *g) for g in got], [(0, *e) for e in expected.funding[symbol]])


def test_frames_used_and_unused_are_counted_per_channel(replayed: tuple[Recording, Captured, Expected]) -> None:
    row, captured, expected = replayed
    events = captured.rows["capture_events"]
    tally: dict[int, dict[str, int]] = {EVENT_KINDS["USED"]: {}, EVENT_KINDS["UNUSED"]: {}}
    for kind, reason, count in zip(events["kind"], events["reason"], events["count"], strict=True):
        if int(kind) in tally:
            channel = reason.split(" ", 1)[1]
            tally[int(kind)][channel] = tally[int(kind)].get(channel, 0) + int(count)
    assert tally[EVENT_KINDS["USED"]] == {c: n for c, n in expected.channels.items() if c in row.used}
    assert tally[EVENT_KINDS["UNUSED"]] == {c: n for c, n in expected.channels.items() if c not in row.used}
    channels = set(events["reason"][events["kind"] == EVENT_KINDS["CHANNEL"]])
    assert channels == row.channel_events


def test_a_replay_below_the_use_floor_fails_naming_the_unused_channels(fixtures_dir: Path, tmp_path: Path) -> None:
    """Only the trades of the binance session (91 of 1,535 frames, 5.9 %) under the default floor (20 %)."""
    row = RECORDINGS[-1]
    trades_only = Recording(row.file, row.exchange, row.symbols, ("trades",), row.used, row.channel_events)
    failed = capture(fixtures_dir, tmp_path / "floor", trades_only)
    assert failed.returncode == 3, failed.stdout[-2000:]
    assert "5.9 % of the recording's frames used, below replay.min_use_ratio 0.2" in failed.stdout
    assert "linear:depth@100ms 764" in failed.stdout and "linear:bookTicker 613" in failed.stdout
    assert len(failed.rows["trades"]) == 91  # what it did use still landed
    accepted = capture(fixtures_dir, tmp_path / "told", trades_only, min_use_ratio=0)
    assert accepted.returncode == 0, accepted.stdout[-2000:]


def test_basis_is_computed_from_the_bybit_session_quotes(replayed: tuple[Recording, Captured, Expected]) -> None:
    """The warehouse's `basis` from a real session: perp quotes from bybit's linear tickers, spot quotes from
    its spot book (the spot tickers carry none); each 1m row equals the last quotes of the minute by hand."""
    from dagster import DagsterInstance, materialize
    from dagster_duckdb import DuckDBResource

    from fundarb_dagster.defs.funding.assets import basis, funding_intervals
    from fundarb_dagster.defs.raw.assets import instruments, raw_funding, raw_tickers
    from fundarb_dagster.defs.resources import DataDirResource, SourceConfigResource

    row, captured, expected = replayed
    if row.file != "BYBIT.jsonl.zst":
        return  # the one session with spot and perps quoted on one venue (binance's holds USD-M perps only)
    resources = {
        "duckdb": DuckDBResource(database=str(captured.data_dir / "warehouse.duckdb")),
        "data_dir": DataDirResource(data_dir=str(captured.data_dir)),
        "source": SourceConfigResource(config_path=str(captured.config)),
    }
    instance = DagsterInstance.ephemeral()
    hour = "2026-08-09-21:00"  # the session was recorded 21:26-21:27 UTC
    assert materialize([raw_tickers, raw_funding], resources=resources, partition_key=hour, instance=instance).success
    no_markets = {"ops": {"funding_intervals": {"config": {"use_market_info": False}}}}
    assert materialize([instruments, funding_intervals], resources=resources, run_config=no_markets).success
    assert materialize([basis], resources=resources, partition_key=hour, instance=instance).success
    import duckdb

    with duckdb.connect(str(captured.data_dir / "warehouse.duckdb"), read_only=True) as conn:
        got = conn.execute(
            "SELECT symbol, epoch_ms(ts) AS ts_ms, basis_bps FROM basis WHERE timeframe = '1m' ORDER BY symbol, ts"
        ).fetchall()
    want = []
    for perp, spot in (("BTC/USDT:USDT", "BTC/USDT"), ("ETH/USDT:USDT", "ETH/USDT")):
        last: dict[str, dict[int, tuple]] = {perp: {}, spot: {}}
        for symbol in (perp, spot):
            for t in expected.tickers[symbol]:
                last[symbol][t[0] // MINUTE_MS * MINUTE_MS] = t
        for minute in sorted(set(last[perp]) & set(last[spot])):
            p, q = last[perp][minute], last[spot][minute]
            want.append((perp, minute, ((p[1] + p[2]) / 2 / ((q[1] + q[2]) / 2) - 1) * 1e4))
    assert len(got) == len(want) >= 2
    for (symbol, ts, bps), (w_symbol, w_ts, w_bps) in zip(got, want, strict=True):
        assert (symbol, ts) == (w_symbol, w_ts) and math.isfinite(bps) and bps == pytest.approx(w_bps, abs=1e-9)


def test_the_okx_dated_future_lands_with_its_expiry_and_basis_to_expiry(
    replayed: tuple[Recording, Captured, Expected],
) -> None:
    """BTC-USD-220527 (expires 2022-05-27 08:00 UTC per the session's instrument list) against BTC-USDT spot:
    `core.basis.expiry_basis` on the landed quotes equals the last quotes of each minute by hand."""
    import pandas as pd

    from fundarb_dagster.core.basis import expiry_basis, last_quotes

    row, captured, expected = replayed
    if row.file != "OKX.jsonl.zst":
        return
    registry = json.loads((captured.data_dir / "instruments.json").read_text())
    future = next(i for i in registry["instruments"] if i["symbol"] == "BTC/USD:BTC-220527")
    assert (future["type"], future["inverse"], future["contract_size"], future["expiry_ms"]) == (
        "future", True, 100.0, 1653638400000,
    )  # fmt: skip
    tickers = captured.rows["tickers"]
    quotes = last_quotes(tickers[["exchange", "symbol", "ts_ms", "bid", "ask", "mark_price", "index_price"]], "1m")
    futures = pd.DataFrame([{"exchange": "okx", "symbol": future["symbol"], "expiry_ms": future["expiry_ms"]}])
    got = expiry_basis(quotes, futures)
    want = []
    last: dict[str, dict[int, tuple]] = {"BTC/USD:BTC-220527": {}, "BTC/USDT": {}}
    for symbol in last:
        for t in expected.tickers[symbol]:
            last[symbol][t[0] // MINUTE_MS * MINUTE_MS] = t
    for minute in sorted(set(last["BTC/USD:BTC-220527"]) & set(last["BTC/USDT"])):
        f, s = last["BTC/USD:BTC-220527"][minute], last["BTC/USDT"][minute]
        premium = (f[1] + f[2]) / 2 / ((s[1] + s[2]) / 2) - 1
        days = (1653638400000 - minute) / 86_400_000
        want.append((minute, premium * 1e4, premium * 365 / days))
    assert len(got) == len(want) >= 1
    for (_, r), (minute, bps, apr) in zip(got.iterrows(), want, strict=True):
        assert int(r["ts"].timestamp() * 1000) == minute and r["spot_symbol"] == "BTC/USDT"
        assert r["basis_bps"] == pytest.approx(bps, abs=1e-9) and r["basis_to_expiry_apr"] == pytest.approx(apr)


def test_hyperliquid_funding_lands_through_the_capture_and_the_learned_interval_is_saved(tmp_path: Path) -> None:
    """A hyperliquid session recorded by the live source (its REST interval lookup included) replayed by the
    capture job: every context's rate lands with interval 1 h and the next hour as its settlement, and the
    interval the watcher learned is saved in instruments.json, marked `learned`."""
    import asyncio

    from tests.core.sources.hyperliquid_session import CONTEXTS, SYMBOL, record_session

    path, _, _ = asyncio.run(record_session(tmp_path / "raw"))
    frames = [json.loads(line) for line in path.read_text().splitlines()]
    contexts = [f for f in frames if f["t"] == "recv" and '"activeAssetCtx"' in f["data"] and '"ctx"' in f["data"]]
    row = Recording(str(path), "hyperliquid", {(None, "BTC"): SYMBOL}, ("funding",), frozenset(), frozenset())
    captured = capture(tmp_path.parent, tmp_path / "job", row)
    assert captured.returncode == 0, captured.stdout[-2000:]
    funding = captured.rows["funding"].sort_values("ts_ms")
    assert funding["funding_rate"].tolist() == [float(c[0]) for c in CONTEXTS]
    assert set(funding["interval_h"]) == {1.0}
    received = [int(f["ts"] * 1000) for f in contexts]  # no time in the frames: the receive time stands in
    assert funding["ts_ms"].tolist() == received
    assert funding["funding_ts_ms"].tolist() == [(t // 3_600_000 + 1) * 3_600_000 for t in received]
    saved = json.loads((captured.data_dir / "instruments.json").read_text())["intervals"]
    assert [span[1:] for span in saved[f"hyperliquid|{SYMBOL}"]] == [[1.0, "learned"]]


def test_bybit_order_books_land_sampled_and_load_into_book_depth(
    replayed: tuple[Recording, Captured, Expected], fixtures_dir: Path
) -> None:
    """The BYBIT session's `orderbook.200` books (linear and spot) through the capture job: one book per
    10 s (the default `capture.book_interval_s`), the top 20 levels, equal to the books rebuilt from the raw
    frames here; then `raw_order_book` and `book_depth` materialized by Dagster from what landed, the cost of
    buying 100,000 USD in each minute equal to the hand walk of the rebuilt books."""
    import duckdb
    from dagster import DagsterInstance, materialize
    from dagster_duckdb import DuckDBResource

    from fundarb_dagster.defs.market.assets import book_depth
    from fundarb_dagster.defs.raw.assets import raw_order_book
    from fundarb_dagster.defs.resources import DataDirResource, SourceConfigResource
    from tests.core.sources.test_feed_order_book import bybit_books, sampled

    row, captured, _ = replayed
    if row.file != "BYBIT.jsonl.zst":
        return
    path = fixtures_dir / "ws_recordings" / row.file
    conns = {"linear": "BYBIT.ws.2", "spot": "BYBIT.ws.3"}
    landed = captured.rows["order_book"]
    want_rows: dict[str, list] = {}
    for (kind, venue_id), symbol in row.symbols.items():
        want = sampled(bybit_books(path, conns[kind], venue_id), 10_000)
        want_rows[symbol] = want
        mine = landed[landed["symbol"] == symbol].sort_values("ts_ms")
        assert mine["ts_ms"].tolist() == [w[0] for w in want] and len(want) >= 4, symbol
        assert mine["updates"].tolist() == [w[1] for w in want], symbol
        for got, (_, _, bids, asks) in zip(mine.itertuples(), want, strict=True):
            assert list(got.bid_price) == [p for p, _ in bids[:20]] and list(got.ask_size) == [q for _, q in asks[:20]]
    resources = {
        "duckdb": DuckDBResource(database=str(captured.data_dir / "warehouse.duckdb")),
        "data_dir": DataDirResource(data_dir=str(captured.data_dir)),
        "source": SourceConfigResource(config_path=str(captured.config)),
    }
    instance = DagsterInstance.ephemeral()
    hour = "2026-08-09-21:00"
    assert materialize([raw_order_book, book_depth], resources=resources, partition_key=hour, instance=instance).success
    with duckdb.connect(str(captured.data_dir / "warehouse.duckdb"), read_only=True) as conn:
        loaded = conn.execute("SELECT count(*) FROM raw_order_book").fetchone()[0]
        depth = conn.execute(
            "SELECT symbol, epoch_ms(ts), snapshots, buy_cost_bps FROM book_depth WHERE notional_usd = 100000 "
            "ORDER BY symbol, ts"
        ).fetchall()
    assert loaded == len(landed) == sum(len(w) for w in want_rows.values())
    expected = []
    for symbol in sorted(want_rows):
        by_minute: dict[int, list[float]] = defaultdict(list)
        for ts, _, bids, asks in want_rows[symbol]:
            mid, left, bought = (bids[0][0] + asks[0][0]) / 2, 100_000.0, 0.0
            for price, size in asks[:20]:  # the walk, level by level
                take = min(left, price * size)
                bought, left = bought + take / price, left - take
                if left <= 1e-9:
                    break
            by_minute[ts // MINUTE_MS * MINUTE_MS].append((100_000 / bought / mid - 1) * 1e4 if left <= 1e-9 else NAN)
        for minute, costs in sorted(by_minute.items()):
            finite = [c for c in costs if not math.isnan(c)]
            expected.append((symbol, minute, len(costs), sum(finite) / len(finite) if finite else NAN))
    assert len(depth) == len(expected) >= 8
    for got, want in zip(depth, expected, strict=True):
        cost = NAN if got[3] is None else got[3]  # NULL where no book of the minute was deep enough
        assert got[:3] == want[:3] and (same(cost, want[3]) or cost == pytest.approx(want[3], abs=1e-9)), (got, want)


def test_binance_futures_order_books_land_as_ccxt_builds_them_from_the_snapshot_and_diffs(
    replayed: tuple[Recording, Captured, Expected], fixtures_dir: Path
) -> None:
    """The BINANCE_FUTURES session's `@depth@100ms` diffs over its recorded REST snapshots, through the capture
    job: one book per 10 s (the default sampling) per symbol, each equal to the book binance's documented
    procedure builds here from the same records, and to what the Feed keeps from the same replay in-process."""
    from tests.core.sources.test_feed_order_book import _wire_feed, _zst_lines, binance_books, sampled

    row, captured, _ = replayed
    if row.file != "BINANCE_FUTURES.jsonl.zst":
        return
    path = fixtures_dir / "ws_recordings" / row.file
    records = _zst_lines(path)
    symbols = sorted(set(row.symbols.values()))
    fed, _ = _wire_feed(path, "binance", symbols, 10.0, 20)
    landed = captured.rows["order_book"]
    for (_, venue_id), symbol in row.symbols.items():
        built = {ts: nonce for ts, nonce, _, _ in binance_books(records, venue_id)}
        want = sampled([(ts, b, a) for ts, _, b, a in binance_books(records, venue_id)], 10_000)
        mine = landed[landed["symbol"] == symbol].sort_values("ts_ms")
        assert mine["ts_ms"].tolist() == [w[0] for w in want] and len(want) >= 3, symbol
        assert mine["updates"].tolist() == [w[1] for w in want], symbol
        assert mine["nonce"].tolist() == [built[w[0]] for w in want] and set(mine["from_rest"]) == {0}, symbol
        for got, feed_row, (_, _, bids, asks) in zip(mine.itertuples(), fed[symbol], want, strict=True):
            assert list(got.bid_price) == [p for p, _ in bids[:20]] == feed_row["bid_price"].tolist(), symbol
            assert list(got.ask_size) == [q for _, q in asks[:20]] == feed_row["ask_size"].tolist(), symbol
            assert (got.ts_ms, got.nonce, got.updates) == tuple(int(feed_row[f]) for f in ("ts_ms", "nonce", "updates"))


def test_bybit_open_interest_lands_from_the_recorded_linear_tickers(
    replayed: tuple[Recording, Captured, Expected], fixtures_dir: Path
) -> None:
    """The BYBIT session's perps' open interest through the capture job: read from the linear `tickers` frames
    (ccxt 4.5 has no open-interest stream; the recording no REST poll), one row per new figure, each equal to the
    frames merged here with plain json (`openInterest` base units, `openInterestValue` USD, the frame's ts)."""
    row, captured, _ = replayed
    if row.file != "BYBIT.jsonl.zst":
        return
    session = read_session(fixtures_dir / "ws_recordings" / row.file, row.conn_kinds)
    state: dict[str, dict[str, Any]] = {}
    expected: dict[str, list[tuple]] = defaultdict(list)
    for frame in session.frames:
        msg = frame.msg
        if frame.kind != "linear" or not isinstance(msg, dict) or not str(msg.get("topic")).startswith("tickers."):
            continue
        venue_id = msg["topic"].split(".")[1]
        merged = state[venue_id] = {**(state.get(venue_id, {}) if msg["type"] == "delta" else {}), **msg["data"]}
        kept = expected[row.symbols[("linear", venue_id)]]
        if "openInterest" in msg["data"] and (not kept or kept[-1][1] != float(merged["openInterest"])):
            kept.append((msg["ts"], float(merged["openInterest"]), float(merged["openInterestValue"])))
    assert len(expected) == 4
    for symbol, want in expected.items():
        got = _landed(captured, "open_interest", symbol, ["ts_ms", "contracts", "value"], ["ts_ms"])
        assert got == want and len(want) >= 4, symbol
