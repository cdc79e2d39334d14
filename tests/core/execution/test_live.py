"""The live path offline, as far as ccxt allows: the trader's gateway drives the real `ccxt.pro.binance` class
(fundarb's live subclass, built by `open_live_venues`) with its HTTP layer answered from payloads, so ccxt's own
request building, signing and response parsing run; nothing reaches a network.

- dry run is the default and sends nothing: a paper venue over the live market data, no credentials;
- sending needs both switches (`trade.dry_run: false` and `--send-orders`), keys from the environment only, and
  goes to the venue's testnet unless `trade.sandbox: false`;
- the signed requests carry the trader's client order id, reduce-only on exits, and an HMAC-SHA256 signature
  checked here independently; the secret appears in no request, log line or landed file;
- responses parse into the trader's order states; the funding history is ccxt's recorded `fetchFundingHistory`
  response (shared fixtures), parsed as ccxt's own test expects.

The binance payloads below are the shapes binance's USD-M futures API documents (exchangeInfo symbol, order,
marginType, leverage), with values of this test."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import urllib.parse
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fundarb_dagster.core.config import ConfigError, default_config
from fundarb_dagster.core.execution import ledger as rows
from fundarb_dagster.core.execution.gateway import Gateway, Sent
from fundarb_dagster.core.execution.ids import OrderKey, Purpose, client_order_id, decision_id, pair_tag
from fundarb_dagster.core.execution.launch import TradeRun, check
from fundarb_dagster.core.execution.ledger import Ledger
from fundarb_dagster.core.execution.live import open_live_venues
from fundarb_dagster.core.execution.machine import LegOrder
from fundarb_dagster.core.execution.paper import PaperExchange

KEY, SECRET = "fundarb-test-key-0123456789", "fundarb-test-secret-9876543210"
ENV = {"FUNDARB_BINANCE_API_KEY": KEY, "FUNDARB_BINANCE_SECRET": SECRET}
PERP = "BTC/USDT:USDT"
PAIR = "binance:BTC/USDT:USDT|binance:BTC/USDT"
BTCUSDT = {  # GET /fapi/v1/exchangeInfo, one symbol
    "symbol": "BTCUSDT",
    "pair": "BTCUSDT",
    "contractType": "PERPETUAL",
    "deliveryDate": 4133404800000,
    "onboardDate": 1569398400000,
    "status": "TRADING",
    "baseAsset": "BTC",
    "quoteAsset": "USDT",
    "marginAsset": "USDT",
    "pricePrecision": 2,
    "quantityPrecision": 3,
    "baseAssetPrecision": 8,
    "quotePrecision": 8,
    "underlyingType": "COIN",
    "filters": [
        {"filterType": "PRICE_FILTER", "minPrice": "556.80", "maxPrice": "4529764", "tickSize": "0.10"},
        {"filterType": "LOT_SIZE", "stepSize": "0.001", "maxQty": "1000", "minQty": "0.001"},
        {"filterType": "MARKET_LOT_SIZE", "stepSize": "0.001", "maxQty": "120", "minQty": "0.001"},
        {"filterType": "MIN_NOTIONAL", "notional": "100"},
    ],
    "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET"],
    "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
}


def order_response(params: dict[str, str]) -> dict[str, Any]:
    """POST/GET /fapi/v1/order: a market order filled at once (binance's documented fields)."""
    qty = params.get("quantity", "0.135")
    return {
        "orderId": 4051234567,
        "symbol": "BTCUSDT",
        "status": "FILLED",
        "clientOrderId": params.get("newClientOrderId") or params.get("origClientOrderId"),
        "price": "0",
        "avgPrice": "61910.00",
        "origQty": qty,
        "executedQty": qty,
        "cumQty": qty,
        "cumQuote": f"{float(qty) * 61910.0:.2f}",
        "timeInForce": "GTC",
        "type": "MARKET",
        "reduceOnly": params.get("reduceOnly") == "true",
        "closePosition": False,
        "side": params.get("side", "SELL"),
        "positionSide": "BOTH",
        "stopPrice": "0",
        "workingType": "CONTRACT_PRICE",
        "priceProtect": False,
        "origType": "MARKET",
        "updateTime": 1793494800025,
    }


def recorded_funding(fixtures_dir: Path) -> dict[str, Any]:
    entries = json.loads((fixtures_dir / "ccxt_rest_responses" / "binance.json").read_text())["entries"]
    return next(e for e in entries if e["method"] == "fetchFundingHistory")


class Wire:
    """ccxt's HTTP layer answered here: every request recorded (method, url, headers, body)."""

    def __init__(self, funding: list[dict[str, Any]]) -> None:
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []
        self.funding = funding

    async def fetch(self, url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        self.requests.append((method, url, dict(headers or {}), body))
        path = urllib.parse.urlparse(url).path
        params = self.params(url, body)
        if path.endswith("/order"):
            return order_response(params)
        if path.endswith("/marginType"):
            return {"code": 200, "msg": "success"}
        if path.endswith("/leverage"):
            return {"leverage": int(params["leverage"]), "maxNotionalValue": "1000000", "symbol": "BTCUSDT"}
        if path.endswith("/income"):
            return self.funding
        raise AssertionError(f"unexpected request {method} {url}")

    @staticmethod
    def params(url: str, body: Any) -> dict[str, str]:
        query = urllib.parse.urlparse(url).query or (body if isinstance(body, str) else "")
        return dict(urllib.parse.parse_qsl(query))


def sending_config(**trade: Any) -> Any:
    config = default_config()
    return replace(config, source="live", trade=replace(config.trade, dry_run=False, **trade))


def open_binance(wire: Wire, **trade: Any) -> Any:
    venue = open_live_venues(sending_config(**trade), {"binance": (PERP,)}, dry_run=False, environ=ENV)["binance"]
    venue.set_markets([venue.parse_market(BTCUSDT)])  # ccxt's own parse of the exchangeInfo symbol
    venue.fetch = wire.fetch
    return venue


def leg_order(purpose: Purpose, side: int, reduce_only: bool) -> LegOrder:
    decision = decision_id(PAIR, 1_793_494_800_000, "target:+1:0.135")
    cid = client_order_id(OrderKey(pair_tag(PAIR), decision, 0, purpose, 0), "binance")
    return LegOrder(cid, 0, side, 0.135, reduce_only, purpose, decision, 0, 1_793_494_800_000)


def test_dry_run_is_the_default_and_needs_two_switches_to_send() -> None:
    config = replace(default_config(), source="live")
    assert config.trade.dry_run is True
    assert check(config, TradeRun(venue="live")).trade.dry_run is True
    assert check(config, TradeRun(venue="live", dry_run=False)).trade.dry_run is True  # the config still says dry
    sending = replace(config, trade=replace(config.trade, dry_run=False))
    assert check(sending, TradeRun(venue="live")).trade.dry_run is True  # --send-orders not given
    assert check(sending, TradeRun(venue="live", dry_run=False)).trade.dry_run is False


def test_a_dry_run_is_a_paper_venue_over_live_data_without_credentials() -> None:
    venues = open_live_venues(replace(default_config(), source="live"), {"binance": (PERP,)}, dry_run=True, environ=ENV)
    venue = venues["binance"]
    assert isinstance(venue, PaperExchange)
    assert not getattr(venue.source, "apiKey", "") and not getattr(venue.source, "secret", "")
    assert "credentials: none" in repr(venue.source)
    asyncio.run(venue.close())


def test_sending_needs_the_keys_in_the_environment() -> None:
    with pytest.raises(ConfigError, match="FUNDARB_BINANCE_API_KEY"):
        open_live_venues(sending_config(), {"binance": (PERP,)}, dry_run=False, environ={})


def test_sending_goes_to_the_testnet_unless_sandbox_is_switched_off() -> None:
    testnet = open_binance(Wire([]))
    assert "testnet" in testnet.urls["api"]["fapiPrivate"]
    real = open_binance(Wire([]), sandbox=False)
    assert real.urls["api"]["fapiPrivate"].startswith("https://fapi.binance.com")
    for venue in (testnet, real):
        assert KEY not in repr(venue) and SECRET not in repr(venue)
        asyncio.run(venue.close())


def test_the_gateway_speaks_to_binance_through_ccxt_signed_with_the_environments_secret(
    tmp_path: Path, fixtures_dir: Path
) -> None:
    funding = recorded_funding(fixtures_dir)
    wire = Wire(funding["httpResponse"])
    venue = open_binance(wire, sandbox=False)
    gateway = Gateway({"binance": venue})
    said: list[str] = []

    async def session() -> tuple[Any, Any, Any, list[dict[str, Any]]]:
        await gateway.load({"binance": (PERP,)})
        said.extend(await gateway.prepare(3.0))
        entry = await gateway.send(("binance", PERP), leg_order(Purpose.ENTRY, -1, False))
        exit_ = await gateway.send(("binance", PERP), leg_order(Purpose.EXIT, 1, True))
        found = await gateway.lookup(("binance", PERP), leg_order(Purpose.ENTRY, -1, False).client_id)
        paid = await gateway.funding_history(("binance", PERP), None)
        await gateway.close()
        return entry, exit_, found, paid

    entry, exit_, found, paid = asyncio.run(session())
    assert said == []  # isolated margin at 3x accepted

    # the order requests: POST /fapi/v1/order with the client id, reduce-only on the exit, signed
    posts = [
        (url, headers, body)
        for method, url, headers, body in wire.requests
        if url.endswith("/order") and method == "POST"
    ]
    assert len(posts) == 2
    for (url, headers, body), order in zip(
        posts, (leg_order(Purpose.ENTRY, -1, False), leg_order(Purpose.EXIT, 1, True)), strict=True
    ):
        assert url == "https://fapi.binance.com/fapi/v1/order"
        params = Wire.params(url, body)
        assert params["newClientOrderId"] == order.client_id
        assert (params["symbol"], params["type"], params["quantity"]) == ("BTCUSDT", "MARKET", "0.135")
        assert params["side"] == ("SELL" if order.side < 0 else "BUY")
        assert params.get("reduceOnly") == ("true" if order.reduce_only else None)
        assert headers["X-MBX-APIKEY"] == KEY
        unsigned, signature = body.rsplit("&signature=", 1)
        assert signature == hmac.new(SECRET.encode(), unsigned.encode(), hashlib.sha256).hexdigest()
    assert all(SECRET not in json.dumps([u, h, b]) for _, u, h, b in wire.requests)
    margin = [Wire.params(u, b) for m, u, _, b in wire.requests if u.endswith("/marginType")]
    leverage = [Wire.params(u, b) for m, u, _, b in wire.requests if u.endswith("/leverage")]
    assert margin[0]["marginType"] == "ISOLATED" and leverage[0]["leverage"] == "3"

    # the answers, parsed by ccxt, as the trader's order states (base units)
    assert isinstance(entry, Sent) and isinstance(exit_, Sent)
    assert (entry.state.status, entry.state.filled, entry.state.average) == ("closed", 0.135, 61910.0)
    assert entry.state.client_id == leg_order(Purpose.ENTRY, -1, False).client_id
    assert found is not None and found.order_id == "4051234567"
    lookup = [Wire.params(u, b) for m, u, _, b in wire.requests if m == "GET" and u.split("?")[0].endswith("/order")]
    assert lookup[0]["origClientOrderId"] == leg_order(Purpose.ENTRY, -1, False).client_id

    # the funding history: ccxt's recorded response, parsed as its own test expects, landed without secrets
    assert [(p["symbol"], p["timestamp"], p["amount"], p["id"]) for p in paid] == [
        (p["symbol"], p["timestamp"], p["amount"], p["id"]) for p in funding["parsedResponse"]
    ]
    book = Ledger(tmp_path, "trader-live")
    book.add("funding_payments", rows.funding_record("binance", paid[0], 1_707_465_600_500))
    book.add(
        "orders",
        rows.order_record(
            leg_order(Purpose.ENTRY, -1, False),
            pair=PAIR,
            leg=gateway.leg(("binance", PERP)),
            ts_ms=1,
            recv_ts_ms=1,
            order_id=entry.state.order_id,
        ),
    )
    book.flush()
    landed = b"".join(p.read_bytes() for p in tmp_path.rglob("*.parquet"))
    assert KEY.encode() not in landed and SECRET.encode() not in landed
