"""Execution: placing and keeping two-leg carry trades on venues through ccxt's unified private API.

Plain Python (no Dagster). The trader's side: `machine` (the pair state machine, pure), `ids` (client order ids
from decisions), `sizing`, `targets`, `risk_gate`, `signals`, `gateway` (the venue calls), `ledger` (the
execution streams, landed), `recovery` (start-up), `trader` (the loop), `pnl`, `funding_reconciliation`.
"""
