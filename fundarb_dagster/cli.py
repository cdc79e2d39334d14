"""The `fundarb` command: demo, capture, import, history, check-config, assets, ui.

Each subcommand is a thin shell over a function in the package, imported only when that subcommand runs
(importing mpi4py initialises MPI, so only the capture job itself ever does). Every argument and the config
are checked before any work: a bad one prints one line naming it and the value, and the exit code is 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .core import arguments
from .core.config import SOURCE_KINDS, TRADE_VENUES, ConfigError, load_config, parse_utc_ms
from .instance import dagster_env

DESCRIPTION = """\
fundarb: crypto perpetual-futures funding-rate arbitrage.
Capture market data (live ccxt.pro, a simulated exchange, or recorded data), land it as Parquet,
build a DuckDB warehouse with Dagster, find and backtest funding-carry trades, watch risk, raise alerts."""

EPILOG = """\
examples:
  fundarb demo                                   the whole pipeline offline on the simulator (a few minutes)
  fundarb capture --source sim --duration 60     run the MPI capture job for a minute
  fundarb trade --venue sim --duration 60         paper-trade the configured pairs on the simulator for a minute
  fundarb trade --flatten                        flatten every pair (a running trader is asked to)
  fundarb import BTCUSDT-1m-2024-01.zip --exchange binance --symbol BTC/USDT:USDT
  fundarb import data.binance.vision/data/futures/um/monthly/fundingRate --exchange binance   every symbol
  fundarb backfill                               materialize all landed history: days, then the last day's hours
  fundarb ui                                     open the Dagster UI on the demo's instance
  fundarb screenshots --out docs/img             screenshots of the UI's pages after the demo (docs/ui.md)
  dagster asset materialize -m fundarb_dagster.definitions --select "$(fundarb assets --scope hourly)" \
      --partition-range "2026-11-01-00:00...2026-11-01-23:00"     every hourly table of a day, one run"""

SCOPES = ("hourly", "daily")
HISTORY_STREAMS = ("ohlcv", "funding", "trades")
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (`fundarb demo: argument --ranks: invalid int value: 'x'`)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fundarb",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        help="run the whole pipeline offline on the simulator and show the results",
        description="Pull 7 days of simulated history for 3 venues x 3 assets (spot and perp), run the MPI "
        "capture job for about a minute of wall time at a high speed factor, materialize the Dagster "
        "pipeline into DuckDB, backtest both strategies, and print funding, basis, opportunities, the "
        "risk report and alerts. Needs no network.",
    )
    demo.add_argument("--data-dir", default="data", help="where landing files, DuckDB and DAGSTER_HOME go")
    demo.add_argument("--history-days", type=float, default=7.0, help="days of sim history to pull (7)")
    demo.add_argument("--capture-seconds", type=float, default=60.0, help="wall seconds of capture (60; 0 skips)")
    demo.add_argument("--speed", type=float, default=4320.0, help="sim market seconds per wall second (4320)")
    demo.add_argument("--ranks", type=int, default=3, help="MPI ranks for the capture job (3)")
    demo.add_argument("--fresh", action="store_true", help="delete the data folder first")

    capture = commands.add_parser(
        "capture",
        help="run the MPI capture job (mpiexec) into the landing zone",
        description="Launch `mpiexec -n RANKS python -m mpi_jobs.capture`: watcher ranks stream the configured "
        "subscriptions into shared-memory rings, a flusher rank writes hive-partitioned Parquet under "
        "DATA/landing. SIGINT/SIGTERM drain and flush before exit. API keys for live sources come only "
        "from the environment (FUNDARB_<EXCHANGE>_API_KEY, FUNDARB_<EXCHANGE>_SECRET).",
    )
    capture.add_argument("--config", help="YAML config (default: the embedded sim defaults)")
    capture.add_argument("--source", choices=SOURCE_KINDS, help="override the config's source kind")
    capture.add_argument("--ranks", type=int, help="MPI ranks, >= 2 (one flusher per node, the rest watch)")
    capture.add_argument("--duration", type=float, help="stop after this many wall seconds (default: run until ^C)")
    capture.add_argument("--data-dir", help="override the config's data folder")

    importer = commands.add_parser(
        "import",
        help="load recorded files (Binance public-data archives, fixture CSVs) into the landing zone",
        description="Import Binance public-data archives (klines, trades, aggTrades, fundingRate; .csv, .zip "
        "or .parquet, with or without header, ms or us timestamps) or fundarb fixture CSVs into the landing zone, so "
        "the warehouse can use years of history. Idempotent: a file already imported is skipped.",
    )
    importer.add_argument(
        "paths", nargs="+", type=Path, help="files or folders (their .csv, .zip and .parquet files) to import"
    )
    importer.add_argument("--exchange", required=True, help="ccxt exchange id, e.g. binance")
    importer.add_argument(
        "--symbol",
        help="ccxt unified symbol (BTC/USDT:USDT) or the venue's market id (BTCUSD_PERP); default: each file's "
        "name says its market id (BTCUSDT-fundingRate-2024-01.zip), so one import takes a venue's whole archive",
    )
    importer.add_argument("--kind", help="klines | trades | aggTrades | fundingRate (default: detected)")
    importer.add_argument("--data-dir", default="data", help="data folder (default: data)")
    importer.add_argument(
        "--min-landed-share",
        type=float,
        default=0.5,
        help="fail a file of which less than this share of rows lands (default 0.5; 0: keep any)",
    )

    history = commands.add_parser(
        "history",
        help="pull REST history (OHLCV, funding) for the configured symbols into the landing zone",
        description="Paginated, rate-limit aware fetch_ohlcv / fetch_funding_rate_history for every "
        "configured symbol, written to the landing zone.",
    )
    history.add_argument("--config", help="YAML config (default: the embedded sim defaults)")
    history.add_argument("--since", required=True, help="start, ISO-8601 UTC (e.g. 2026-10-25T00:00:00Z)")
    history.add_argument("--until", required=True, help="end, ISO-8601 UTC")
    history.add_argument("--streams", default="ohlcv,funding", help="comma-separated (ohlcv,funding,trades)")
    history.add_argument("--data-dir", help="override the config's data folder")

    _add_trade_commands(commands)

    check = commands.add_parser(
        "check-config",
        help="validate a config file and print what it subscribes to",
        description="Validate a config file without starting anything; exit 2 with the field and value on error.",
    )
    check.add_argument("config", nargs="?", help="YAML config (default: the embedded defaults)")

    assets = commands.add_parser(
        "assets",
        help="print the asset keys of every hourly or daily asset, for `dagster asset materialize --select`",
        description="Print the comma-separated keys of every asset on the hourly (or daily) partitions, in every "
        "domain, so one `dagster asset materialize --partition-range A...B` run rebuilds them all: "
        'dagster asset materialize -m fundarb_dagster.definitions --select "$(fundarb assets --scope hourly)" '
        '--partition-range "2026-11-01-00:00...2026-11-01-23:00".',
    )
    assets.add_argument("--scope", choices=SCOPES, default="hourly", help="partitions to select (hourly)")

    _add_backfill_command(commands)

    ui = commands.add_parser(
        "ui",
        help="start the Dagster UI (dagster dev) on the data folder's instance",
        description="Run `dagster dev -m fundarb_dagster.definitions` with DAGSTER_HOME=DATA/dagster_home and "
        "FUNDARB_DATA_DIR=DATA, i.e. on the same instance and warehouse the demo used.",
    )
    ui.add_argument("--data-dir", default="data", help="data folder (default: data)")
    ui.add_argument("--port", type=int, default=3000, help="port (default: 3000)")

    shots = commands.add_parser(
        "screenshots",
        help="screenshots of the Dagster UI's pages on the data folder's instance (docs/ui.md)",
        description="Start dagster-webserver on DATA's instance (after `fundarb demo`), open each page docs/ui.md "
        "shows in the OS's headless Chromium (Playwright, no browser download; `apt-get install -y chromium`) "
        "and save one PNG per page.",
    )
    shots.add_argument("--data-dir", default="data", help="data folder of a finished demo (default: data)")
    shots.add_argument("--out", default="docs/img", help="folder for the PNGs (default: docs/img)")
    return parser


def _add_backfill_command(commands: Any) -> None:
    backfill = commands.add_parser(
        "backfill",
        help="materialize landed history (imports) in bounded runs: raw tables, bars, funding, spreads",
        description="Materialize the landed history on the data folder's Dagster instance (the UI lists the runs), "
        "printing each run's wall time beside its steps' time. The range is cut at the newest landed day: the "
        "months holding the days before it run as history_job (the same tables on monthly partitions, group "
        "history, runs of at most 12 months; --from/--to inside a month load all of it); the newest day's hours "
        "run as the live path's stage jobs (--jobs, runs of at most a month of hours), which the daemon's sensors "
        "then continue hour by hour.",
    )
    backfill.add_argument("--data-dir", default="data", help="data folder (default: data)")
    backfill.add_argument("--from", dest="start", help="first day, YYYY-MM-DD (default: the first landed day)")
    backfill.add_argument(
        "--to", dest="end", help="end day (exclusive), YYYY-MM-DD (default: after the last landed hour)"
    )
    backfill.add_argument(
        "--jobs",
        default="hourly_job,signals_job",
        help="stage jobs for the newest landed day's hours, comma-separated (default: hourly_job,signals_job)",
    )
    backfill.add_argument(
        "--hourly-only",
        action="store_true",
        help="no history months: the whole range on hourly partitions (720x Dagster's bookkeeping per month)",
    )


def _add_trade_commands(commands: Any) -> None:
    """`trade` and `sim-venue`."""
    trade = commands.add_parser(
        "trade",
        help="run the trader: signals -> hedged two-leg positions on sim, paper or live venues",
        description="Turn the strategy's signal (or the warehouse's opportunities) into target positions within the "
        "configured limits and execute two-leg entries and exits through ccxt's private API: same base quantity "
        "on both legs, a leg timeout after which a one-legged pair is finished or unwound, reduce-only exits, "
        "client order ids derived from each decision (a restart never doubles an order), a risk check at the "
        "decision and before each order. On start it reconciles with the venue; everything it does lands under "
        "DATA/landing/{orders,fills,positions,balances,funding_payments}. Kill switch: `fundarb trade --flatten`, "
        "or the file DATA/.fundarb/trade/<name>.flatten. Live venues are dry-run unless trade.dry_run is false.",
    )
    trade.add_argument("--config", help="YAML config with a `trade:` section (default: the embedded sim defaults)")
    trade.add_argument("--venue", choices=TRADE_VENUES, default="sim", help="sim | paper (a market-data source) | live")
    trade.add_argument("--duration", type=float, help="stop after this many wall seconds (default: run until ^C)")
    trade.add_argument("--until", help="stop at this time on the venue's clock, ISO-8601 UTC")
    trade.add_argument(
        "--flatten", action="store_true", help="flatten every pair, then exit (or ask the running trader)"
    )
    trade.add_argument("--reduce-only", action="store_true", help="only exits: nothing new is opened")
    trade.add_argument("--send-orders", action="store_true", help="live: really send orders (trade.dry_run: false too)")
    trade.add_argument("--venue-socket", default="", help="sim: trade a `fundarb sim-venue` server's venues")
    trade.add_argument("--data-dir", help="override the config's data folder")

    venue = commands.add_parser(
        "sim-venue",
        help="serve the simulated venues in their own process (they outlive a trader that is killed)",
        description="Host one simulated exchange per configured exchange, with its private API (orders, fills, "
        "positions, funding), on a Unix socket that `fundarb trade --venue sim --venue-socket PATH` trades on.",
    )
    venue.add_argument("--config", help="YAML config (default: the embedded sim defaults)")
    venue.add_argument("--socket", required=True, help="Unix socket path to listen on")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"fundarb {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _landing_free(data_dir: str | Path) -> None:
    """A capture into `data_dir` would be refused: say so before any work, naming the running job."""
    from mpi_jobs.lock import lock_holder

    busy = lock_holder(data_dir)
    if busy is not None:
        raise ConfigError(busy)


def _demo(args: argparse.Namespace) -> int:
    arguments.demo(args.data_dir, args.history_days, args.capture_seconds, args.speed, args.ranks)
    if args.capture_seconds > 0:
        _landing_free(args.data_dir)
    from .demo import run_demo

    return run_demo(
        data_dir=Path(args.data_dir),
        history_days=args.history_days,
        capture_seconds=args.capture_seconds,
        speed=args.speed,
        ranks=args.ranks,
        fresh=args.fresh,
    )


def _capture(args: argparse.Namespace) -> int:
    from mpi_jobs.launcher import launch_capture

    return launch_capture(
        args.config, source=args.source, ranks=args.ranks, duration_s=args.duration, data_dir=args.data_dir
    )


def _import(args: argparse.Namespace) -> int:
    from .core.importer import check_arguments, format_summary, import_files, resolve_symbol, symbol_from_name

    exchange = args.exchange.lower()

    def lookup(market_id: str, market_type: str | None = None) -> dict | None:
        return _market(exchange, market_id, False, market_type)

    symbol = resolve_symbol(exchange, args.symbol, args.data_dir, lookup) if args.symbol else None
    check_arguments(
        args.paths,
        Path(args.data_dir),
        exchange=args.exchange,
        symbol=symbol,
        kind=args.kind,
        min_landed_share=args.min_landed_share,
    )
    markets: dict[str, dict | None] = {}

    def market(unified: str) -> dict | None:  # loaded once per symbol, only for contracts
        if unified not in markets:
            markets[unified] = _market(exchange, unified) if ":" in unified else None
        return markets[unified]

    summary = import_files(
        args.paths,
        Path(args.data_dir),
        exchange=args.exchange,
        symbol=symbol,
        kind=args.kind,
        market=market,
        min_landed_share=args.min_landed_share,
        symbol_of=symbol_from_name(exchange, args.data_dir, lookup),
    )
    print(format_summary(summary))
    return 0 if summary.ok else 1  # a file that could not be read at all fails the command


def _market(exchange: str, symbol: str, say_why: bool = True, market_type: str | None = None) -> dict | None:
    """ccxt's market of a symbol or venue market id, from the venue (contract size, inverse, expiry); None when
    it cannot be reached (the importer then uses the registry, and refuses an inverse contract it cannot size)."""
    import asyncio

    import ccxt

    from .core.sources.live import load_market

    try:
        return asyncio.run(load_market(exchange, symbol, market_type))
    except (ccxt.BaseError, KeyError, OSError, ValueError) as exc:  # ValueError: no ccxt.pro class for it
        if not say_why:  # the caller's own error says what could not be resolved
            return None
        print(
            f"fundarb: markets of {exchange} not loaded ({type(exc).__name__}: {exc})",
            file=sys.stderr,
        )
        return None


def _history(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.data_dir:
        config = config.with_overrides(data_dir=args.data_dir)
    arguments.data_dir(config.data_dir, "data_dir")
    since, until = parse_utc_ms(args.since, "--since"), parse_utc_ms(args.until, "--until")
    if since >= until:
        raise ConfigError(f"--until: {args.until!r} is not after --since {args.since!r}")
    streams = tuple(s.strip() for s in args.streams.split(",") if s.strip())
    unknown = [s for s in streams if s not in HISTORY_STREAMS] or ([] if streams else [args.streams])
    if unknown:
        raise ConfigError(f"--streams: {unknown[0]!r} is not one of {list(HISTORY_STREAMS)}")
    from .core.history import pull_history

    counts = pull_history(config, since, until, streams=streams)
    for stream, rows in counts.items():
        print(f"{stream}: {rows} rows landed under {config.data_path / 'landing' / stream}")
    return 0


def _trade(args: argparse.Namespace) -> int:
    import asyncio

    from .core.execution.launch import TradeRun, trade

    config = load_config(args.config)
    if args.data_dir:
        config = config.with_overrides(data_dir=args.data_dir)
    arguments.data_dir(config.data_dir, "data_dir")
    if args.duration is not None:
        arguments.number(args.duration, "--duration", minimum=0.0, inclusive=False)
    until = parse_utc_ms(args.until, "--until") if args.until else None
    if args.send_orders and config.trade.dry_run:
        raise ConfigError("--send-orders: trade.dry_run is true in the config; switch it off there too")
    run = TradeRun(venue=args.venue, duration_s=args.duration, until_ms=until, flatten=args.flatten,
                   reduce_only=args.reduce_only, dry_run=not args.send_orders,
                   venue_socket=args.venue_socket)  # fmt: skip
    return asyncio.run(trade(config, run))


def _sim_venue(args: argparse.Namespace) -> int:
    import asyncio

    from .core.execution.venue_server import serve

    config = load_config(args.config)
    if config.source != "sim":
        raise ConfigError(f"source: {config.source!r}; sim-venue serves the simulator (source: sim)")
    asyncio.run(serve(config, args.socket))
    return 0


def _check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    arguments.data_dir(config.data_dir, "data_dir")
    from .core.config import validate_trade

    validate_trade(config.trade)
    subs = config.subscriptions()
    print(f"config ok: source={config.source} data_dir={config.data_dir} subscriptions={len(subs)}")
    for exchange in config.exchanges:
        print(f"  {exchange.id}: {', '.join(exchange.symbols)}  [{', '.join(exchange.streams)}]")
    return 0


def selection_string(scope: str) -> str:
    """Comma-separated asset keys of every `hourly` or `daily` asset, for `dagster asset materialize --select`."""
    import warnings

    from dagster import SupersessionWarning

    # The freshness-check builders are superseded in Dagster 1.13; a user printing a selection has nothing to act on.
    warnings.filterwarnings("ignore", category=SupersessionWarning)
    from .definitions import all_assets
    from .defs.jobs import keys_with_partitions
    from .defs.partitions import DAILY, HOURLY

    partitions_def = {"hourly": HOURLY, "daily": DAILY}.get(scope)
    if partitions_def is None:
        raise ValueError(f"scope: {scope!r}; expected one of {list(SCOPES)}")
    return ",".join(k.to_user_string() for k in keys_with_partitions(all_assets, partitions_def))


def _assets(args: argparse.Namespace) -> int:
    print(selection_string(args.scope))
    return 0


def _ui(args: argparse.Namespace) -> int:
    import subprocess

    arguments.data_dir(args.data_dir)
    arguments.whole(args.port, "--port", minimum=1)
    if args.port > 65535:
        raise ConfigError(f"--port: {args.port!r} must be at most 65535")
    env = dagster_env(Path(args.data_dir))
    command = [
        str(Path(sys.executable).with_name("dagster")),
        "dev",
        "-m",
        "fundarb_dagster.definitions",
        "-p",
        str(args.port),
    ]
    print(f"DAGSTER_HOME={env['DAGSTER_HOME']} {' '.join(command)}")
    return subprocess.call(command, env=env)


def _screenshots(args: argparse.Namespace) -> int:
    from . import webui

    data = arguments.data_dir(args.data_dir)
    arguments.data_dir(args.out, "--out")
    if not (data / "dagster_home").is_dir():
        raise ConfigError(f"--data-dir: {args.data_dir!r} has no dagster_home; run `fundarb demo` first")
    try:
        webui.find_chromium()
    except FileNotFoundError as exc:
        raise ConfigError(str(exc)) from None
    saved = webui.take_screenshots(data, Path(args.out))
    print(f"{len(saved)} screenshots in {args.out}")
    return 0


def _backfill(args: argparse.Namespace) -> int:
    from datetime import date

    from .backfill import backfill

    days = {}
    for name, value in (("--from", args.start), ("--to", args.end)):
        try:
            days[name] = date.fromisoformat(value) if value else None
        except ValueError:
            raise ConfigError(f"{name}: {value!r} is not a date (YYYY-MM-DD)") from None
    data_dir = arguments.data_dir(args.data_dir)
    jobs = tuple(j.strip() for j in args.jobs.split(",") if j.strip())
    timings = backfill(Path(data_dir), days["--from"], days["--to"], jobs, hourly_only=args.hourly_only)
    return 0 if timings and all(t.ok for t in timings) else 1


COMMANDS = {
    "demo": _demo,
    "backfill": _backfill,
    "capture": _capture,
    "import": _import,
    "history": _history,
    "trade": _trade,
    "sim-venue": _sim_venue,
    "check-config": _check_config,
    "assets": _assets,
    "ui": _ui,
    "screenshots": _screenshots,
}


if __name__ == "__main__":
    raise SystemExit(main())
