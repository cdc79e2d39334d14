"""Live venues: the real ccxt.pro exchange of each venue, dry-run unless switched off twice.

- Dry run (the default): a paper venue (`paper.PaperExchange`) over the live market data (`sources.live`, no
  credentials): real quotes and funding, paper fills, nothing sent.
- Sending (`trade.dry_run: false` in the config *and* `fundarb trade --send-orders`): the live ccxt.pro object
  itself. Its credentials come only from the environment (`config.api_credentials`:
  `FUNDARB_<EXCHANGE>_API_KEY` / `_SECRET` / `_PASSWORD`, hyperliquid `_WALLET_ADDRESS` / `_PRIVATE_KEY`),
  never from a file, and are never logged (`sources.live`'s repr says only whether they are set). With
  `trade.sandbox` (the default) the venue's testnet (ccxt `set_sandbox_mode(True)`); a venue ccxt knows no
  testnet for refuses to start until `trade.sandbox: false` says to trade it for real.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import ccxt

from ..config import CREDENTIAL_VARIABLES, ConfigError, FundarbConfig, api_credentials
from ..sources.live import create_live_exchange
from .paper import open_paper_venues


def open_live_venues(
    config: FundarbConfig, markets: Mapping[str, Sequence[str]], dry_run: bool, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """One venue per exchange of `markets` (see the module doc)."""
    options = {e.id: e.options for e in config.exchanges}
    if dry_run:
        sources = {e: create_live_exchange(e, config.live, {}, options=options.get(e)) for e in markets}
        return dict(open_paper_venues(config, markets, sources))
    out: dict[str, Any] = {}
    for exchange in markets:
        credentials = api_credentials(exchange, environ)
        if not credentials:
            names = " / ".join(f"FUNDARB_{exchange.upper()}_{suffix}" for _, suffix in CREDENTIAL_VARIABLES)
            raise ConfigError(f"{names}: none is set; sending orders to {exchange!r} needs its keys in the environment")
        venue = create_live_exchange(exchange, config.live, credentials, options=options.get(exchange))
        if config.trade.sandbox:
            try:
                venue.set_sandbox_mode(True)
            except ccxt.NotSupported:
                raise ConfigError(
                    f"trade.sandbox: ccxt knows no testnet for {exchange!r}; set trade.sandbox: false to trade it live"
                ) from None
        out[exchange] = venue
    return out
