"""The config file: defaults valid, every ConfigError names the field and the value, secrets only from env."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from fundarb_dagster.core.config import (
    ConfigError,
    api_credentials,
    check_symbols,
    config_from_dict,
    default_config,
    load_config,
    parse_utc_ms,
)
from fundarb_dagster.core.schema import MARKET_STREAMS

REPO = Path(__file__).resolve().parents[2]


FEE = {"exchange": "binance", "market": "perp", "maker_bps": 2, "taker_bps": 5, "valid_from": "2026-01-01"}


def base(**changes: object) -> dict:
    raw: dict = {"source": "live", "exchanges": [{"id": "binance", "symbols": ["BTC/USDT", "BTC/USDT:USDT"]}]}
    raw.update(changes)
    return raw


def test_embedded_defaults_are_valid_and_cover_three_venues_spot_and_perp() -> None:
    config = default_config()
    assert config == load_config(None)
    assert config.source == "sim" and config.data_dir == "data"
    assert [e.id for e in config.exchanges] == ["binance", "bybit", "hyperliquid"]
    assert config.exchanges[2].symbols == (
        "BTC/USDC",
        "BTC/USDC:USDC",
        "ETH/USDC",
        "ETH/USDC:USDC",
        "SOL/USDC",
        "SOL/USDC:USDC",
    )
    subs = config.subscriptions()
    # 9 spot instruments x 3 streams + 9 perps x 4 streams (funding only for perps)
    assert len(subs) == 9 * 3 + 9 * 4
    assert all(":" in symbol for _, symbol, stream in subs if stream == "funding")
    assert config.capture.stale_timeout_s["funding"] == 900.0
    assert config_from_dict({}) == config  # an empty file is the defaults


def test_a_minimal_file_inherits_defaults_and_top_level_streams(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "source": "live",
                "streams": ["trades", "funding"],
                "exchanges": [
                    {"id": "okx", "symbols": ["BTC/USDT:USDT"]},
                    {"id": "bybit", "symbols": ["ETH/USDT"], "streams": ["tickers"]},
                ],
                "capture": {"ranks": 3, "stale_timeout_s": {"trades": 30}},
                "sim": {"faults": {"malformed_rate": 0.01}},
            }
        )
    )
    config = load_config(path)
    assert config.exchanges[0].streams == ("trades", "funding")
    assert config.exchanges[1].streams == ("tickers",)
    assert config.capture.ranks == 3 and config.capture.flush_interval_s == 2.0
    assert config.capture.stale_timeout_s == {"trades": 30.0, "tickers": 60.0, "funding": 900.0, "ohlcv": 180.0,
                                              "order_book": 60.0}  # fmt: skip
    assert config.sim.faults.malformed_rate == 0.01 and config.sim.faults.duplicate_rate == 0.0
    assert config.subscriptions() == [
        ("okx", "BTC/USDT:USDT", "trades"),
        ("okx", "BTC/USDT:USDT", "funding"),
        ("bybit", "ETH/USDT", "tickers"),
    ]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            base(exchanges=[{"id": "binanze", "symbols": ["BTC/USDT"]}]),
            "exchanges[0].id: unknown exchange 'binanze' for source 'live'",
        ),
        (
            {"source": "sim", "exchanges": [{"id": "kraken", "symbols": ["BTC/USDT"]}]},
            "exchanges[0].id: unknown exchange 'kraken' for source 'sim'",
        ),
        (base(source="paper"), "source: unknown source kind 'paper'"),
        (
            base(exchanges=[{"id": "okx", "symbols": ["BTCUSDT"]}]),
            "exchanges[0].symbols: 'BTCUSDT' is not a ccxt unified symbol",
        ),
        (base(exchanges=[{"id": "okx", "symbols": ["BTC/USDT-PERP"]}]), "exchanges[0].symbols: 'BTC/USDT-PERP' is not"),
        (base(exchanges=[{"id": "okx", "symbols": []}]), "exchanges[0].symbols: empty for exchange 'okx'"),
        (
            base(exchanges=[{"id": "okx", "symbols": "BTC/USDT"}]),
            "exchanges[0].symbols: expected a list, got 'BTC/USDT'",
        ),
        (
            base(exchanges=[{"id": "okx", "symbols": ["BTC/USDT"]}, {"id": "okx", "symbols": ["ETH/USDT"]}]),
            "exchanges[1].id: exchange 'okx' is listed twice",
        ),
        (base(exchanges=[{"symbols": ["BTC/USDT"]}]), "exchanges[0].id: missing"),
        (base(exchanges=["binance"]), "exchanges[0]: expected a mapping with id and symbols, got 'binance'"),
        (base(exchanges=[]), "exchanges: at least one exchange is needed"),
        (base(streams=["trades", "orderbook"]), "streams: unknown stream 'orderbook'"),
        (
            base(exchanges=[{"id": "okx", "symbols": ["BTC/USDT"], "streams": ["book"]}]),
            "exchanges[0].streams: unknown stream 'book'",
        ),
        (base(capture={"ranks": "two"}), "capture.ranks: expected a number, got 'two'"),
        (base(capture={"ranks": 2.5}), "capture.ranks: expected a whole number, got 2.5"),
        (base(capture={"ranks": True}), "capture.ranks: expected a number, got True"),
        (base(capture={"ranks": 1}), "capture.ranks: 1 must be >= 2"),
        (base(capture={"flush_interval_s": 0}), "capture.flush_interval_s: 0.0 must be > 0"),
        (
            base(capture={"flush_interval_s": float("inf")}),
            "capture.flush_interval_s: expected a finite number, got inf",
        ),
        (base(capture={"ring_records": 0}), "capture.ring_records: 0 must be >= 1"),
        (base(capture={"book_levels": 21}), "capture.book_levels: 21 must be between 1 and 20"),
        (base(capture={"book_interval_s": -1}), "capture.book_interval_s: -1.0 must be >= 0 (0 = every update)"),
        (base(capture={"open_interest_interval_s": 0}), "capture.open_interest_interval_s: 0.0 must be > 0"),
        (
            base(capture={"order_book_rest_interval_s": -1}),
            "capture.order_book_rest_interval_s: -1.0 must be 0 (off) or between 1 and 86400 seconds",
        ),
        (
            base(capture={"order_book_rest_interval_s": 0.5}),
            "capture.order_book_rest_interval_s: 0.5 must be 0 (off) or between 1 and 86400 seconds",
        ),
        (
            base(capture={"order_book_rest_interval_s": "often"}),
            "capture.order_book_rest_interval_s: expected a number, got 'often'",
        ),
        (
            base(capture={"order_book_rest_interval_s": float("nan")}),
            "capture.order_book_rest_interval_s: expected a finite number, got nan",
        ),
        (
            {**base(capture={"order_book_rest_interval_s": 60}), "source": "wire", "replay": {"path": "x.jsonl"}},
            "capture.order_book_rest_interval_s: 60.0 polls fetch_order_book, which a 'wire' source cannot answer",
        ),
        (
            base(exchanges=[{"id": "hyperliquid", "symbols": ["BTC/USDC:USDC"], "streams": ["liquidations"]}]),
            "exchanges[0].streams: 'liquidations' on 'hyperliquid': ccxt.pro has no watch_liquidations for it",
        ),
        (
            {
                "source": "sim",
                "exchanges": [
                    {"id": "hyperliquid", "symbols": ["BTC/USDC:USDC"], "streams": ["trades", "liquidations"]}
                ],
            },  # fmt: skip
            "exchanges[0].streams: 'liquidations' on 'hyperliquid': ccxt.pro has no watch_liquidations for it",
        ),
        (
            base(capture={"ring_records": 100, "batch_records": 200}),
            "capture.batch_records: 200 exceeds ring_records 100",
        ),
        (base(capture={"drop_policy": "yolo"}), "capture.drop_policy: 'yolo'"),
        (base(capture={"landing": "everywhere"}), "capture.landing: 'everywhere'; expected one of"),
        (base(capture={"hostfile": "/no/such/hosts"}), "capture.hostfile: '/no/such/hosts' is not a file"),
        (base(capture={"stale_timeout_s": {"book": 5}}), "capture.stale_timeout_s.book: unknown stream"),
        (base(capture={"stale_timeout_s": {"trades": -1}}), "capture.stale_timeout_s.trades: -1.0 must be > 0"),
        (
            base(capture={"stale_timeout_s": {"trades": "soon"}}),
            "capture.stale_timeout_s.trades: expected a number, got 'soon'",
        ),
        (base(capture={"stale_timeout_s": 5}), "capture.stale_timeout_s: expected a mapping, got 5"),
        (base(sim={"speed": -1}), "sim.speed: -1.0 must be > 0"),
        (base(sim={"start": "yesterday"}), "sim.start: 'yesterday' is not an ISO-8601 time"),
        (base(sim={"faults": {"malformed_rate": 1.5}}), "sim.faults.malformed_rate: 1.5 must be between 0 and 1"),
        (base(sim={"faults": {"malformd_rate": 0.1}}), "sim.faults.malformd_rate: unknown field"),
        (base(sim={"faults": {"duplicate_rate": "lots"}}), "sim.faults.duplicate_rate: expected a number, got 'lots'"),
        (base(live={"funding_poll_interval_s": 0}), "live.funding_poll_interval_s: 0.0 must be > 0"),
        (base(live={"reconnect_max_backoff_s": -3}), "live.reconnect_max_backoff_s: -3.0 must be > 0"),
        (base(live={"api_key": "abc"}), "live.api_key: unknown field"),
        (base(source="replay"), "replay.path: required when source is 'replay'"),
        (base(replay={"path": "x", "format": "parquet"}), "replay.format: 'parquet'"),
        (base(replay={"path": "x", "speed": -2}), "replay.speed: -2.0 must be >= 0"),
        (base(replay={"min_use_ratio": 1.5}), "replay.min_use_ratio: 1.5 must be between 0 and 1"),
        (base(exchanges=[{"id": "binance", "symbols": ["BTC/USDT"], "options": "aggTrade"}]), "exchanges[0].options"),
        (
            base(exchanges=[{"id": "okx", "symbols": ["BTC/USD:BTC-2205"]}]),
            "'BTC/USD:BTC-2205' is not a ccxt unified symbol like BTC/USDT, BTC/USDT:USDT or BTC/USD:BTC-260327",
        ),
        (base(sorce="sim"), "sorce: unknown field"),
        (base(capture={"rank": 3}), "capture.rank: unknown field"),
        (base(exchanges=[{"id": "okx", "symbol": ["BTC/USDT"]}]), "exchanges[0].symbol: unknown field"),
        (base(capture=[1, 2]), "capture: expected a mapping, got [1, 2]"),
        (base(fees={"exchange": "binance"}), "fees: expected a list"),
        (base(fees=[{**FEE, "market": "futures"}]), "fees[0].market: 'futures'; expected 'spot' or 'perp'"),
        (base(fees=[{**FEE, "maker_bps": "two"}]), "fees[0].maker_bps: expected a number, got 'two'"),
        (base(fees=[{**FEE, "taker_bps": 250}]), "fees[0].taker_bps: 250 bps is beyond +-100"),
        (base(fees=[{**FEE, "valid_from": "soon"}]), "fees[0].valid_from: 'soon' is not an ISO-8601 time"),
        (base(fees=[{k: v for k, v in FEE.items() if k != "valid_from"}]), "fees[0].valid_from: missing"),
        (
            base(fees=[FEE, {**FEE, "maker_bps": 1}]),
            "fees[1]: the same exchange, tier, market and valid_from as fees[0]",
        ),
        (base(fees=[{**FEE, "rebate": 1}]), "fees[0].rebate: unknown field"),
        (base(exchanges=[{"id": "okx", "symbols": ["BTC/USDT"], "fee_tier": ""}]), "exchanges[0].fee_tier: ''"),
    ],
)
def test_every_config_error_names_the_field_and_the_value(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict(raw)
    assert message in str(caught.value)


def test_top_level_and_file_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config: expected a mapping at the top level, got list"):
        config_from_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="config: file '.*missing.yaml' does not exist"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("source: [sim\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(broken)


def test_overrides_are_validated_again() -> None:
    config = default_config()
    assert config.with_overrides(data_dir="/tmp/x").data_dir == "/tmp/x"
    with pytest.raises(ConfigError, match="source: unknown source kind 'nope'"):
        config.with_overrides(source="nope")


def test_check_symbols_names_a_symbol_the_exchange_does_not_list() -> None:
    config = config_from_dict(base())
    markets = {"BTC/USDT": {}, "ETH/USDT": {}}
    with pytest.raises(
        ConfigError, match="exchanges\\[0\\].symbols: 'BTC/USDT:USDT' is not listed by exchange 'binance'"
    ):
        check_symbols(config, "binance", markets)
    check_symbols(config, "binance", {**markets, "BTC/USDT:USDT": {}})
    check_symbols(config, "okx", {})  # an exchange the config does not use: nothing to check


def test_api_credentials_come_from_the_environment_only(monkeypatch, tmp_path: Path) -> None:
    env = {"FUNDARB_BINANCE_API_KEY": "k", "FUNDARB_BINANCE_SECRET": "s", "FUNDARB_OKX_PASSWORD": "p", "OTHER": "x"}
    assert api_credentials("binance", env) == {"apiKey": "k", "secret": "s"}
    assert api_credentials("okx", env) == {"password": "p"}
    assert api_credentials("bybit", env) == {}
    monkeypatch.setenv("FUNDARB_BYBIT_API_KEY", "from-env")
    monkeypatch.setenv("FUNDARB_BYBIT_SECRET", "")  # empty is absent
    assert api_credentials("bybit") == {"apiKey": "from-env"}
    # and a file cannot carry them
    path = tmp_path / "keys.yaml"
    path.write_text(yaml.safe_dump({"exchanges": [{"id": "binance", "symbols": ["BTC/USDT"], "apiKey": "x"}]}))
    with pytest.raises(ConfigError, match="exchanges\\[0\\].apiKey: unknown field"):
        load_config(path)


def test_times_parse_as_utc_epoch_ms() -> None:
    assert parse_utc_ms("2026-11-01T00:00:00Z", "t") == 1_793_491_200_000
    assert parse_utc_ms("2026-11-01T01:00:00+01:00", "t") == 1_793_491_200_000
    assert parse_utc_ms("2026-11-01T00:00:00", "t") == 1_793_491_200_000  # naive means UTC
    assert parse_utc_ms(1_793_491_200_000, "t") == 1_793_491_200_000


@pytest.mark.parametrize("name", ["sim.yaml", "replay.yaml", "live.yaml"])
def test_the_example_configs_load(name: str) -> None:
    config = load_config(REPO / "config" / name)
    assert config.exchanges and set(config.exchanges[0].streams) <= set(MARKET_STREAMS)


def test_the_sim_example_spells_out_the_embedded_defaults() -> None:
    assert load_config(REPO / "config" / "sim.yaml") == default_config()


def test_the_live_example_lists_four_venues_with_btc_eth_sol_spot_and_perp() -> None:
    config = load_config(REPO / "config" / "live.yaml")
    assert config.source == "live"
    assert [e.id for e in config.exchanges] == ["binance", "bybit", "okx", "hyperliquid"]
    for exchange in config.exchanges:
        quote = "USDC" if exchange.id == "hyperliquid" else "USDT"
        assert set(exchange.symbols) == {f"{a}/{quote}{s}" for a in ("BTC", "ETH", "SOL") for s in ("", f":{quote}")}
    assert "apiKey" not in (REPO / "config" / "live.yaml").read_text()
    # every perp's open interest; liquidations where the venue has a channel (not hyperliquid), never spot
    positioning = {(e, s, st) for e, s, st in config.subscriptions() if st in ("open_interest", "liquidations")}
    assert len(positioning) == 3 * 3 * 2 + 3
    assert ("hyperliquid", "BTC/USDC:USDC", "open_interest") in positioning
    assert not any(e == "hyperliquid" and st == "liquidations" or ":" not in s for e, s, st in positioning)


def test_the_replay_example_replays_the_default_data_folder() -> None:
    config = load_config(REPO / "config" / "replay.yaml")
    assert config.source == "replay" and config.replay.format == "landing" and config.replay.path == "data"
    assert config.data_dir != config.replay.path  # a replay never lands into the folder it reads


def test_dated_futures_and_ccxt_options_are_accepted_and_futures_get_no_funding_stream() -> None:
    config = config_from_dict(
        {
            "source": "live",
            "exchanges": [
                {"id": "okx", "symbols": ["BTC/USDT", "BTC/USD:BTC-220527", "UNI/USD:UNI"]},
                {"id": "binance", "symbols": ["BTC/USDT:USDT"], "options": {"watchTrades": {"name": "aggTrade"}}},
            ],
        }
    )
    funding = {(e, s) for e, s, stream in config.subscriptions() if stream == "funding"}
    assert funding == {("okx", "UNI/USD:UNI"), ("binance", "BTC/USDT:USDT")}  # not spot, not the dated future
    assert ("okx", "BTC/USD:BTC-220527", "tickers") in config.subscriptions()
    assert config.exchanges[1].options == {"watchTrades": {"name": "aggTrade"}}
    assert config.replay.min_use_ratio == 0.2


def test_open_interest_and_liquidations_are_subscribed_for_perps_only() -> None:
    config = config_from_dict(
        {
            "source": "live",
            "exchanges": [
                {"id": "binanceusdm", "symbols": ["BTC/USDT:USDT"], "streams": ["open_interest", "liquidations"]},
                {"id": "bybit", "symbols": ["BTC/USDT", "ETH/USDT:USDT"], "streams": ["liquidations", "trades"]},
            ],
        }
    )
    assert config.subscriptions() == [
        ("binanceusdm", "BTC/USDT:USDT", "open_interest"),
        ("binanceusdm", "BTC/USDT:USDT", "liquidations"),
        ("bybit", "BTC/USDT", "trades"),  # spot: no liquidations
        ("bybit", "ETH/USDT:USDT", "liquidations"),
        ("bybit", "ETH/USDT:USDT", "trades"),
    ]
    assert config.capture.open_interest_interval_s == 60.0


def test_order_books_are_polled_over_rest_only_where_no_websocket_book_is_configured() -> None:
    exchanges = [
        {"id": "bybit", "symbols": ["BTC/USDT:USDT"], "streams": ["trades", "order_book"]},
        {"id": "okx", "symbols": ["BTC/USDT", "ETH/USDT:USDT"], "streams": ["trades"]},
    ]
    polled = config_from_dict({"source": "sim", "exchanges": exchanges, "capture": {"order_book_rest_interval_s": 300}})
    assert [s for s in polled.subscriptions() if s[2] == "order_book"] == [
        ("bybit", "BTC/USDT:USDT", "order_book"),  # streamed, repaired over REST after a gap
        ("okx", "BTC/USDT", "order_book"),  # polled every 300 s
        ("okx", "ETH/USDT:USDT", "order_book"),
    ]
    assert (polled.book_rest_interval_s("bybit"), polled.book_rest_interval_s("okx")) == (0.0, 300.0)
    off = config_from_dict({"source": "sim", "exchanges": exchanges})
    assert [s for s in off.subscriptions() if s[2] == "order_book"] == [("bybit", "BTC/USDT:USDT", "order_book")]
    assert off.book_rest_interval_s("okx") == 0.0


@pytest.mark.parametrize("field", ["dry_run", "sandbox", "reduce_only"])
def test_a_switch_must_be_true_or_false_not_a_string(field: str) -> None:
    with pytest.raises(ConfigError, match=f"trade.{field}: 'false' must be true or false"):
        config_from_dict({"trade": {field: "false"}})
    assert getattr(config_from_dict({"trade": {field: False}}).trade, field) is False


def test_a_replay_start_that_is_not_a_time_is_refused_naming_it() -> None:
    with pytest.raises(ConfigError, match="replay.start"):
        config_from_dict({"replay": {"start": "yesterday"}})


def test_dated_fees_by_tier_load_with_each_exchange_tier() -> None:
    exchanges = [{"id": "binance", "symbols": ["BTC/USDT"], "fee_tier": "vip1"}, {"id": "okx", "symbols": ["BTC/USDT"]}]
    okx_spot = {**FEE, "exchange": "okx", "market": "spot", "valid_from": "2026-03-01T08:00:00Z"}
    raw = base(exchanges=exchanges, fees=[{**FEE, "vip": 1, "maker_bps": -0.5}, okx_spot])
    config = config_from_dict(raw)
    table = config.fee_table()
    assert table.tiers == {"binance": "vip1", "okx": "vip0"}
    assert [(e.exchange, e.tier, e.market, e.maker_bps) for e in config.fees] == [
        ("binance", "vip1", "perp", -0.5), ("okx", "vip0", "spot", 2.0)]  # fmt: skip
    assert config.fees[1].valid_from_ms == 1_772_352_000_000  # 2026-03-01T08:00Z


def test_the_backtest_section_names_the_bad_field_and_value() -> None:
    config = config_from_dict({"backtest": {"sizing": "capacity", "capacity_share": 0.25}})
    assert (config.backtest.sizing, config.backtest.capacity_share, config.backtest.capacity_horizon_h) == (
        "capacity", 0.25, 168.0)  # fmt: skip
    for section, message in (
        ({"sizing": "biggest"}, "backtest.sizing: 'biggest'; expected one of ['even', 'capacity']"),
        ({"capacity_share": 1.5}, "backtest.capacity_share: 1.5 must be in (0, 1]"),
        ({"capacity_horizon_h": 0}, "backtest.capacity_horizon_h: 0.0 must be > 0"),
        ({"size": "even"}, "backtest.size: unknown field"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            config_from_dict({"backtest": section})
