"""Execution: placing and keeping two-leg carry trades on venues through ccxt's unified private API.

Plain Python (no Dagster). Nothing is imported here, so importing a submodule never drags in the rest (the
simulator imports `private`, and `paper` imports the sources).

The venue side (ccxt's unified private API on every venue kind):
- `protocol.py`: `PrivateVenue`, the ccxt private surface the trader uses; `MarketDriver`;
- `private.py`: `PrivateApi`, the one implementation of that surface for the simulator and paper venues;
- `account.py`, `matching.py`: balances, isolated positions, funding and liquidation; orders and fills;
- `book.py`, `tiers.py`, `rules.py`, `structures.py`: book walks, leverage tiers and liquidation prices,
  venue rules and errors, ccxt's structures.

The trader's side: `machine` (the pair state machine, pure), `ids` (client order ids from decisions),
`sizing`, `targets`, `risk_gate`, `signals`, `gateway` (the venue calls), `ledger` (the execution streams,
landed), `recovery` (start-up), `trader` (the loop), `launch` (`fundarb trade`), `venue_server` (`fundarb
sim-venue`), `pnl`, `funding_reconciliation`.
"""
