"""Dagster assets of the market domain (thin: load inputs, call core/, run sql/, return metadata)."""
