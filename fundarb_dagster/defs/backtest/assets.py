"""Dagster assets of the backtest domain (thin: load inputs, call core/, run sql/, return metadata)."""
